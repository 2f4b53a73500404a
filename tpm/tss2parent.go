package tpm

import "github.com/google/go-tpm/tpm2"

// TSS2OwnerParent is the parent that a "TSS2 PRIVATE KEY" file naming
// TPM_RH_OWNER (0x40000001) means: the primary key tpm2-openssl (Debian's
// 1.1.1) and the tpm2-tss engine create in the owner hierarchy, an ECC
// P-256 storage key of the TCG template with an empty unique field —
// StorageTemplate, not the TCG SRK (whose unique is 32 zero bytes), which
// is another key. Checked against keys tpm2-openssl made on swtpm.
func TSS2OwnerParent() *Loadable {
	return &Loadable{ID: "tss2-owner-parent", Public: tpm2.New2B(StorageTemplate())}
}
