// SPDX-License-Identifier: Apache-2.0
#include "cfs/vfs/object_provider.h"

namespace cfs::vfs {
namespace {

class StoreProvider final : public ObjectProvider {
 public:
  explicit StoreProvider(store::ObjectDirs dirs) : dirs_(std::move(dirs)) {}
  Result<UniqueFd> open_object(std::string_view rel,
                               const std::optional<verity::Digest>&) const override {
    return dirs_.open_object(rel);
  }

 private:
  store::ObjectDirs dirs_;
};

}  // namespace

std::unique_ptr<ObjectProvider> store_provider(store::ObjectDirs dirs) {
  return std::make_unique<StoreProvider>(std::move(dirs));
}

}  // namespace cfs::vfs
