/* A forked child's hash-and-sign mechanisms (child_mech.c): the state it
 * keeps per session, which fork.c and the session calls drop. */
#ifndef TPM11_CHILD_MECH_H
#define TPM11_CHILD_MECH_H
#include "fork.h"

/* Drops every operation the child runs itself (C_Finalize, C_CloseAllSessions). */
void tpm11_child_mech_reset(void) TPM11_HIDDEN;
/* Drops session h's (C_CloseSession). */
void tpm11_child_mech_drop(CK_SESSION_HANDLE h) TPM11_HIDDEN;

#endif
