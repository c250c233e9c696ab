// SPDX-License-Identifier: Apache-2.0
#include "cfs/verity/signature.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>

#include <memory>

namespace cfs::verity {
namespace {

template <auto Fn>
struct Free {
  template <typename T>
  void operator()(T* p) const noexcept {
    Fn(p);
  }
};
using BioPtr = std::unique_ptr<BIO, Free<BIO_free_all>>;
using X509Ptr = std::unique_ptr<X509, Free<X509_free>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, Free<EVP_PKEY_free>>;
using Pkcs7Ptr = std::unique_ptr<PKCS7, Free<PKCS7_free>>;
using StorePtr = std::unique_ptr<X509_STORE, Free<X509_STORE_free>>;
struct CertStackFree {
  void operator()(STACK_OF(X509) * s) const noexcept { sk_X509_free(s); }
};

// The reason OpenSSL queued for the last failure (and clears the queue).
std::string openssl_reason() {
  unsigned long e = 0, last = 0;
  while ((e = ERR_get_error()) != 0) last = e;
  if (last == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(last, buf, sizeof buf);
  return buf;
}

Result<X509Ptr> read_cert(const std::string& file) {
  BioPtr bio(BIO_new_file(file.c_str(), "r"));
  if (!bio) return fail(Errc::kInvalidInput, "certificate " + file + ": " + openssl_reason());
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert)
    return fail(Errc::kInvalidInput,
                "certificate " + file + ": not a PEM X.509 certificate: " + openssl_reason());
  return cert;
}

Result<PkeyPtr> read_key(const std::string& file) {
  BioPtr bio(BIO_new_file(file.c_str(), "r"));
  if (!bio) return fail(Errc::kInvalidInput, "key " + file + ": " + openssl_reason());
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key)
    return fail(Errc::kInvalidInput,
                "key " + file + ": not an unencrypted PEM private key: " + openssl_reason());
  return key;
}

// The flags `fsverity sign` uses: the kernel parses exactly this shape.
constexpr int kSignFlags =
    PKCS7_BINARY | PKCS7_DETACHED | PKCS7_NOATTR | PKCS7_NOCERTS | PKCS7_PARTIAL;

}  // namespace

Result<std::vector<std::uint8_t>> sign_digest(const Digest& d, const std::string& key_file,
                                              const std::string& cert_file) {
  CFS_ASSIGN(auto key, read_key(key_file));
  CFS_ASSIGN(auto cert, read_cert(cert_file));
  if (X509_check_private_key(cert.get(), key.get()) != 1)
    return fail(Errc::kInvalidInput, "key " + key_file + " does not belong to certificate " +
                                         cert_file + ": " + openssl_reason());
  const auto message = formatted_digest(d);
  BioPtr data(BIO_new_mem_buf(message.data(), static_cast<int>(message.size())));
  Pkcs7Ptr p7(PKCS7_sign(nullptr, nullptr, nullptr, nullptr, kSignFlags));
  const EVP_MD* md = d.alg == HashAlg::kSha512 ? EVP_sha512() : EVP_sha256();
  if (!data || !p7 ||
      PKCS7_sign_add_signer(p7.get(), cert.get(), key.get(), md, kSignFlags) == nullptr ||
      PKCS7_final(p7.get(), data.get(), kSignFlags) != 1)
    return fail(Errc::kInvalidInput, "signing with " + key_file + ": " + openssl_reason());
  unsigned char* der = nullptr;
  const int n = i2d_PKCS7(p7.get(), &der);
  if (n <= 0) return fail(Errc::kInvalidInput, "encoding the signature: " + openssl_reason());
  std::vector<std::uint8_t> out(der, der + n);
  OPENSSL_free(der);
  return out;
}

Status verify_digest_signature(const Digest& d, std::span<const std::uint8_t> signature,
                               const std::string& cert_file, const std::string& what) {
  CFS_ASSIGN(auto cert, read_cert(cert_file));
  const unsigned char* p = signature.data();
  Pkcs7Ptr p7(d2i_PKCS7(nullptr, &p, static_cast<long>(signature.size())));
  if (!p7 || p != signature.data() + signature.size())
    return fail(Errc::kInvalidInput, what + ": not a DER PKCS#7 signature: " + openssl_reason());
  std::unique_ptr<STACK_OF(X509), CertStackFree> certs(sk_X509_new_null());
  StorePtr store(X509_STORE_new());
  if (!certs || !store || sk_X509_push(certs.get(), cert.get()) <= 0)
    return fail(Errc::kInvalidInput, what + ": " + openssl_reason());
  const auto message = formatted_digest(d);
  BioPtr data(BIO_new_mem_buf(message.data(), static_cast<int>(message.size())));
  // NOINTERN: only the given certificate may have signed; NOVERIFY: it is trusted as given
  // (the kernel keyring's model), so no chain is built.
  const int ok = PKCS7_verify(p7.get(), certs.get(), store.get(), data.get(), nullptr,
                              PKCS7_BINARY | PKCS7_NOINTERN | PKCS7_NOVERIFY);
  if (ok != 1)
    return fail(Errc::kDigestMismatch, what + ": the signature does not verify for " + d.str() +
                                           " with " + cert_file + ": " + openssl_reason());
  return {};
}

}  // namespace cfs::verity
