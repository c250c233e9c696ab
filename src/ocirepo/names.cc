// SPDX-License-Identifier: Apache-2.0
#include "cfs/ocirepo/names.h"

namespace cfs::ocirepo {

std::string layer_stream_name(const oci::ContentDigest& diff_id) {
  return "oci-layer-" + diff_id.str();
}
std::string config_stream_name(const oci::ContentDigest& digest) {
  return "oci-config-" + digest.str();
}
std::string manifest_stream_name(const oci::ContentDigest& digest) {
  return "oci-manifest-" + digest.str();
}
std::string blob_stream_name(const oci::ContentDigest& digest) {
  return "oci-blob-" + digest.str();
}

std::string encode_tag(std::string_view tag) {
  std::string out;
  for (char c : tag) {
    if (c == '%')
      out += "%25";
    else if (c == '/')
      out += "%2F";
    else
      out += c;
  }
  return out;
}

Result<std::string> decode_tag(std::string_view encoded) {
  std::string out;
  for (std::size_t i = 0; i < encoded.size(); ++i) {
    if (encoded[i] != '%') {
      out += encoded[i];
      continue;
    }
    std::string_view esc = encoded.substr(i, 3);
    if (esc == "%25")
      out += '%';
    else if (esc == "%2F")
      out += '/';
    else
      return fail(Errc::kInvalidInput,
                  "tag ref '" + std::string(encoded) + "': bad escape '" + std::string(esc) + "'");
    i += 2;
  }
  return out;
}

Result<std::string> tag_ref(std::string_view tag) {
  if (tag.empty() || tag.front() == '@' || tag.find('\0') != std::string_view::npos)
    return fail(Errc::kInvalidInput,
                "tag '" + std::string(tag) + "': empty, starting with '@' or holding NUL");
  std::string enc = encode_tag(tag);
  if (enc == "." || enc == "..")
    return fail(Errc::kInvalidInput, "tag '" + std::string(tag) + "' is not valid");
  return std::string(kTagDir) + "/" + enc;
}

}  // namespace cfs::ocirepo
