// SPDX-License-Identifier: Apache-2.0
// fs-verity built-in signatures: a PKCS#7 SignedData (DER, detached, no signed attributes, no
// certificates) over formatted_digest(), signed with the digest's own hash algorithm. These
// are the bytes `fsverity sign` writes and FS_IOC_ENABLE_VERITY's signature argument takes,
// and what a composefs seal carries (docs/registry.md).
// Verification follows the kernel's .fs-verity keyring: the signature must verify with the
// public key of the given certificate; the certificate itself is trusted as given (no chain,
// no expiry check), exactly as a key added to that keyring is.
// Thread-safety: functions only.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "cfs/util/result.h"
#include "cfs/verity/digest.h"

namespace cfs::verity {

/// Signs `d` with the PEM private key and PEM certificate in the given files.
/// Errc::kInvalidInput names a file that cannot be read or parsed, or a key not matching the
/// certificate.
Result<std::vector<std::uint8_t>> sign_digest(const Digest& d, const std::string& key_file,
                                              const std::string& cert_file);

/// Checks that `signature` (DER) signs `d` with the key of the PEM certificate `cert_file`.
/// A signature that does not verify is Errc::kDigestMismatch naming `what`; an unparsable
/// one Errc::kInvalidInput.
Status verify_digest_signature(const Digest& d, std::span<const std::uint8_t> signature,
                               const std::string& cert_file, const std::string& what);

}  // namespace cfs::verity
