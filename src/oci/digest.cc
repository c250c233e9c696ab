// SPDX-License-Identifier: Apache-2.0
#include "cfs/oci/digest.h"

#include <openssl/evp.h>

#include <stdexcept>

#include "cfs/util/hex.h"

namespace cfs::oci {

namespace {

bool alg_char(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool alg_sep(char c) { return c == '+' || c == '.' || c == '_' || c == '-'; }
bool encoded_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '=' ||
         c == '_' || c == '-';
}

}  // namespace

Result<ContentDigest> ContentDigest::parse(std::string_view text) {
  auto bad = [&](const char* why) {
    return fail(Errc::kInvalidInput, "digest '" + std::string(text) + "': " + why);
  };
  std::size_t colon = text.find(':');
  if (colon == std::string_view::npos) return bad("expected algorithm:hex");
  std::string_view alg = text.substr(0, colon), enc = text.substr(colon + 1);
  // algorithm := component ([+._-] component)*, component := [a-z0-9]+
  if (alg.empty() || !alg_char(alg.front()) || !alg_char(alg.back())) return bad("bad algorithm");
  for (std::size_t i = 0; i < alg.size(); ++i) {
    if (alg_char(alg[i])) continue;
    if (!alg_sep(alg[i]) || alg_sep(alg[i + 1])) return bad("bad algorithm");
  }
  if (enc.empty()) return bad("empty encoded part");
  for (char c : enc)
    if (!encoded_char(c)) return bad("bad character in the encoded part");
  std::size_t want = alg == "sha256" ? 64 : alg == "sha512" ? 128 : 0;
  if (want == 0)
    return fail(Errc::kUnsupportedFeature,
                "digest '" + std::string(text) + "': only sha256 and sha512 are supported");
  if (enc.size() != want) return bad("wrong length for the algorithm");
  for (char c : enc)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return bad("not lowercase hex");
  return ContentDigest{std::string(alg), std::string(enc)};
}

struct ContentHasher::Ctx {
  EVP_MD_CTX* md = nullptr;
  ~Ctx() { EVP_MD_CTX_free(md); }
};

ContentHasher::ContentHasher(std::string_view algorithm)
    : ctx_(std::make_unique<Ctx>()), alg_(algorithm) {
  const EVP_MD* md = alg_ == "sha512" ? EVP_sha512() : EVP_sha256();
  if (alg_ != "sha256" && alg_ != "sha512")
    throw std::invalid_argument("ContentHasher: unsupported algorithm " + alg_);
  ctx_->md = EVP_MD_CTX_new();
  if (!ctx_->md || EVP_DigestInit_ex(ctx_->md, md, nullptr) != 1) throw std::bad_alloc();
}
ContentHasher::~ContentHasher() = default;
ContentHasher::ContentHasher(ContentHasher&&) noexcept = default;
ContentHasher& ContentHasher::operator=(ContentHasher&&) noexcept = default;

void ContentHasher::update(std::span<const std::byte> data) {
  EVP_DigestUpdate(ctx_->md, data.data(), data.size());
  size_ += data.size();
}

ContentDigest ContentHasher::finish() {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_DigestFinal_ex(ctx_->md, out, &len);
  return ContentDigest{alg_, to_hex(std::span<const std::uint8_t>(out, len))};
}

ContentDigest sha256_of(std::span<const std::byte> data) {
  ContentHasher h;
  h.update(data);
  return h.finish();
}

Result<std::size_t> HashingSource::read(std::span<std::byte> buf) {
  CFS_ASSIGN(std::size_t n, in_.read(buf));
  hasher_.update(buf.subspan(0, n));
  return n;
}

}  // namespace cfs::oci
