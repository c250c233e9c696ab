// SPDX-License-Identifier: Apache-2.0
#include "repo/reach.h"

#include <array>
#include <cstring>

#include "cfs/erofs/format.h"
#include "cfs/erofs/reader.h"
#include "cfs/util/le.h"
#include "cfs/util/sys.h"
#include "repo/names.h"

namespace cfs::repo::reach {
namespace {

// Streams name streams; a chain deeper than this is a loop or damage.
constexpr int kMaxDepth = 64;

constexpr std::string_view kSplitstreamMagic = "SplitStream";
// bootc <= 1.15 put the info range first and the magic at 18 (splitstream/format.h).
constexpr std::size_t kOldMagicOffset = 18;

}  // namespace

Result<std::vector<std::string>> image_objects(const Repository& repo, const verity::Digest& image,
                                               bool check, std::vector<std::string>* foreign) {
  std::string what = repo.path() + "/images/" + image.hex();
  CFS_ASSIGN(auto fd, repo.open_object(image));
  auto img = erofs::Image::open("/proc/self/fd/" + std::to_string(fd.get()));
  if (!img) return fail(std::move(img).error().with_context(what));
  if (check) {
    if (auto st = erofs::check_image(*img); !st)
      return fail(std::move(st).error().with_context(what));
  }
  auto tree = erofs::load_tree(*img);
  if (!tree) return fail(std::move(tree).error().with_context(what));
  std::vector<std::string> out;
  for (NodeId id = 0; id < tree->size(); ++id) {
    const Node& n = tree->node(id);
    if (!n.is_reg() || n.content || n.payload.empty()) continue;
    auto slash = n.payload.find('/');
    if (slash != std::string::npos &&
        names::object_digest(std::string_view(n.payload).substr(0, slash),
                             std::string_view(n.payload).substr(slash + 1), repo.algorithm())) {
      out.push_back(n.payload);
    } else if (foreign) {
      foreign->push_back(n.payload);
    }
  }
  return out;
}

Result<Content> sniff(const Repository& repo, const verity::Digest& object) {
  CFS_ASSIGN(auto fd, repo.open_object(object));
  std::array<std::byte, erofs::kSuperOffset + 4> head{};
  CFS_ASSIGN(std::size_t n, sys::pread_full(fd.get(), head, 0));
  auto at = [&](std::size_t off, std::string_view magic) {
    return n >= off + magic.size() &&
           std::memcmp(head.data() + off, magic.data(), magic.size()) == 0;
  };
  if (at(0, kSplitstreamMagic) || at(kOldMagicOffset, kSplitstreamMagic)) return Content::kStream;
  if (n == head.size()) {
    le32 magic;
    std::memcpy(&magic, head.data() + erofs::kSuperOffset, sizeof magic);
    if (magic.get() == erofs::kSuperMagic) return Content::kImage;
  }
  return Content::kOther;
}

Status Marker::image(const verity::Digest& image) {
  std::string name = names::object_name(image);
  if (!walked_.insert(name).second) return {};
  live_.insert(name);
  CFS_ASSIGN(auto objects, image_objects(repo_, image, false));
  for (auto& o : objects) live_.insert(std::move(o));
  return {};
}

Status Marker::stream(const verity::Digest& stream) { return stream_at(stream, 0); }

Status Marker::stream_at(const verity::Digest& stream, int depth) {
  std::string name = names::object_name(stream);
  if (!walked_.insert(name).second) return {};
  live_.insert(name);
  CFS_ASSIGN(auto refs, stream_refs(repo_, stream));
  for (const auto& o : refs.objects) live_.insert(names::object_name(o));
  for (const auto& s : refs.streams) CFS_TRY(referenced(s, depth + 1));
  return {};
}

// A digest a stream names: another stream, an image (composefs.image refs), or anything else.
Status Marker::referenced(const verity::Digest& d, int depth) {
  if (depth > kMaxDepth)
    return fail(Errc::kCorruptImage, repo_.path() + ": streams reference each other more than " +
                                         std::to_string(kMaxDepth) + " levels deep");
  std::string name = names::object_name(d);
  if (walked_.count(name)) return {};
  live_.insert(name);
  CFS_ASSIGN(Content c, sniff(repo_, d));
  if (c == Content::kStream) return stream_at(d, depth);
  if (c == Content::kImage) return image(d);
  walked_.insert(name);
  return {};
}

}  // namespace cfs::repo::reach
