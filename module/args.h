/* ARGS(params) turns a parameter list of ck.h's function X-macros into the
 * argument list that passes those parameters on:
 *   ARGS((CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData)) -> ( hSession,  pData)
 * Every parameter there is exactly "TYPE name" with a one-token typedef
 * name, so pasting ARG_DROP_ onto it makes the type a macro that expands to
 * nothing. A parameter of a type not listed here fails to compile. */
#ifndef TPM11_ARGS_H
#define TPM11_ARGS_H

#define ARG_DROP_CK_ASYNC_DATA_PTR
#define ARG_DROP_CK_ATTRIBUTE_PTR
#define ARG_DROP_CK_BBOOL
#define ARG_DROP_CK_BYTE_PTR
#define ARG_DROP_CK_FLAGS
#define ARG_DROP_CK_FLAGS_PTR
#define ARG_DROP_CK_FUNCTION_LIST_PTR_PTR
#define ARG_DROP_CK_INFO_PTR
#define ARG_DROP_CK_INTERFACE_PTR
#define ARG_DROP_CK_INTERFACE_PTR_PTR
#define ARG_DROP_CK_MECHANISM_INFO_PTR
#define ARG_DROP_CK_MECHANISM_PTR
#define ARG_DROP_CK_MECHANISM_TYPE
#define ARG_DROP_CK_MECHANISM_TYPE_PTR
#define ARG_DROP_CK_NOTIFY
#define ARG_DROP_CK_OBJECT_HANDLE
#define ARG_DROP_CK_OBJECT_HANDLE_PTR
#define ARG_DROP_CK_SESSION_HANDLE
#define ARG_DROP_CK_SESSION_HANDLE_PTR
#define ARG_DROP_CK_SESSION_INFO_PTR
#define ARG_DROP_CK_SESSION_VALIDATION_FLAGS_TYPE
#define ARG_DROP_CK_SLOT_ID
#define ARG_DROP_CK_SLOT_ID_PTR
#define ARG_DROP_CK_SLOT_INFO_PTR
#define ARG_DROP_CK_TOKEN_INFO_PTR
#define ARG_DROP_CK_ULONG
#define ARG_DROP_CK_ULONG_PTR
#define ARG_DROP_CK_USER_TYPE
#define ARG_DROP_CK_UTF8CHAR_PTR
#define ARG_DROP_CK_VERSION_PTR
#define ARG_DROP_CK_VOID_PTR

#define ARG_NAME(p) ARG_DROP_##p
#define ARG_CAT(a, b) ARG_CAT_(a, b)
#define ARG_CAT_(a, b) a##b
#define ARG_COUNT(...) ARG_COUNT_(__VA_ARGS__, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0)
#define ARG_COUNT_(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, n, ...) n
#define ARG_MAP(...) ARG_CAT(ARG_MAP_, ARG_COUNT(__VA_ARGS__))(__VA_ARGS__)
#define ARG_MAP_1(a) ARG_NAME(a)
#define ARG_MAP_2(a, ...) ARG_NAME(a), ARG_MAP_1(__VA_ARGS__)
#define ARG_MAP_3(a, ...) ARG_NAME(a), ARG_MAP_2(__VA_ARGS__)
#define ARG_MAP_4(a, ...) ARG_NAME(a), ARG_MAP_3(__VA_ARGS__)
#define ARG_MAP_5(a, ...) ARG_NAME(a), ARG_MAP_4(__VA_ARGS__)
#define ARG_MAP_6(a, ...) ARG_NAME(a), ARG_MAP_5(__VA_ARGS__)
#define ARG_MAP_7(a, ...) ARG_NAME(a), ARG_MAP_6(__VA_ARGS__)
#define ARG_MAP_8(a, ...) ARG_NAME(a), ARG_MAP_7(__VA_ARGS__)
#define ARG_MAP_9(a, ...) ARG_NAME(a), ARG_MAP_8(__VA_ARGS__)
#define ARG_MAP_10(a, ...) ARG_NAME(a), ARG_MAP_9(__VA_ARGS__)
#define ARG_MAP_11(a, ...) ARG_NAME(a), ARG_MAP_10(__VA_ARGS__)
#define ARG_MAP_12(a, ...) ARG_NAME(a), ARG_MAP_11(__VA_ARGS__)
#define ARGS(params) (ARG_MAP params)

#endif
