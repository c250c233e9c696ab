// SPDX-License-Identifier: Apache-2.0
#include "cfs/repo/lease.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "cfs/util/sys.h"
#include "cfs/util/sys_link.h"
#include "repo/names.h"

namespace cfs::repo {
namespace {

constexpr std::string_view kSuffix = ".json";

const char* kind_name(MountKind k) { return k == MountKind::kFuse ? "fuse" : "kernel"; }

std::string boot_id() {
  auto id = sys::read_file("/proc/sys/kernel/random/boot_id");
  if (!id) return "";
  std::string s = *id;
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

Result<std::uint64_t> namespace_of(const std::string& proc_dir) {
  CFS_ASSIGN(auto st, sys::stat(proc_dir + "/ns/mnt"));
  return static_cast<std::uint64_t>(st.st_ino);
}

std::string serialize(const Lease& l) {
  nlohmann::ordered_json j = {
      {"image", l.image},   {"kind", kind_name(l.kind)}, {"mountpoint", l.mountpoint},
      {"mnt_ns", l.mnt_ns}, {"boot_id", l.boot_id},      {"created", l.created},
  };
  if (l.mount_id) j["mount_id"] = *l.mount_id;
  if (l.dev) j["dev"] = *l.dev;
  if (l.unique_id) j["unique_id"] = *l.unique_id;
  if (l.pid) j["pid"] = *l.pid;
  if (l.pid_start) j["pid_start"] = *l.pid_start;
  return j.dump() + "\n";
}

std::optional<Lease> parse(const std::string& id, std::string_view text) {
  auto j = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  Lease l;
  l.id = id;
  try {
    l.image = j.at("image").get<std::string>();
    std::string kind = j.at("kind").get<std::string>();
    if (kind != "kernel" && kind != "fuse") return std::nullopt;
    l.kind = kind == "fuse" ? MountKind::kFuse : MountKind::kKernel;
    l.mountpoint = j.at("mountpoint").get<std::string>();
    l.mnt_ns = j.at("mnt_ns").get<std::uint64_t>();
    l.boot_id = j.at("boot_id").get<std::string>();
    l.created = j.value("created", std::int64_t{0});
    if (j.contains("mount_id")) l.mount_id = j.at("mount_id").get<std::uint64_t>();
    if (j.contains("dev")) l.dev = j.at("dev").get<std::uint64_t>();
    if (j.contains("unique_id")) l.unique_id = j.at("unique_id").get<std::uint64_t>();
    if (j.contains("pid")) l.pid = j.at("pid").get<pid_t>();
    if (j.contains("pid_start")) l.pid_start = j.at("pid_start").get<std::uint64_t>();
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
  return l;
}

// Replaces cfs-mounts/<id> with the lease's current content, whole or not at all.
Status store(Repository& repo, const Lease& l) {
  std::string dir(kMountsDir);
  CFS_TRY(sys::mkdirat_p(repo.fd(), dir, 0755));
  CFS_ASSIGN(auto dfd, sys::openat(repo.fd(), dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW));
  std::string tmp = names::temp_file_name();
  CFS_ASSIGN(auto fd, sys::openat(dfd.get(), tmp, O_WRONLY | O_CREAT | O_EXCL, 0644));
  std::string bytes = serialize(l);
  auto st = sys::write_all(fd.get(), std::as_bytes(std::span(bytes)));
  if (st) st = fd.close();
  if (st) st = sys::renameat(dfd.get(), tmp, dfd.get(), l.id);
  if (!st) (void)sys::unlinkat(dfd.get(), tmp, 0);
  return st;
}

// The mountinfo of a process in the lease's namespace: ours, or any process found in it.
Result<std::optional<std::string>> mountinfo_for(std::uint64_t ns) {
  CFS_ASSIGN(std::uint64_t self, namespace_of("/proc/self"));
  if (self == ns) return std::optional<std::string>("/proc/self/mountinfo");
  CFS_ASSIGN(auto proc, sys::open("/proc", O_RDONLY | O_DIRECTORY));
  CFS_ASSIGN(auto entries, sys::list_dir(proc.get(), "/proc"));
  for (const auto& [name, type] : entries) {
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    auto other = namespace_of("/proc/" + name);
    if (other && *other == ns) return std::optional<std::string>("/proc/" + name + "/mountinfo");
  }
  return std::optional<std::string>();
}

}  // namespace

Result<Lease> begin_lease(Repository& repo, const verity::Digest& image, MountKind kind,
                          const std::string& mountpoint) {
  Lease l;
  l.image = image.hex();
  l.kind = kind;
  CFS_ASSIGN(l.mountpoint, sys::resolve_path(mountpoint));
  CFS_ASSIGN(l.mnt_ns, namespace_of("/proc/self"));
  l.boot_id = boot_id();
  l.created = static_cast<std::int64_t>(::time(nullptr));
  l.id = l.image.substr(0, 16) + "-" + names::temp_file_name().substr(5) + std::string(kSuffix);
  CFS_TRY(store(repo, l));
  return l;
}

Result<MountPlan> prepare_mount(Repository& repo, std::string_view name, MountKind kind,
                                const std::string& mountpoint, bool lease, bool checked_copy) {
  MountPlan plan;
  CFS_ASSIGN(plan.image, repo.resolve_image(name));
  // Opening checks it is a regular file inside objects/ and, when secure, its fs-verity.
  CFS_ASSIGN(auto fd, repo.open_object(plan.image));
  plan.image_path = repo.path() + "/" + repo.object_path(plan.image);
  plan.objects_dir = repo.path() + "/" + std::string(kObjectsDir);
  plan.require_verity = repo.secure();
  if (!repo.secure() && !checked_copy) {
    // Insecure: nothing below checks the image itself, so check its name here (small files).
    verity::Params p;
    p.alg = repo.algorithm();
    CFS_ASSIGN(auto d, verity::digest_fd(fd.get(), p, plan.image_path));
    if (!(d == plan.image))
      return fail(Errc::kDigestMismatch, plan.image_path + ": fs-verity digest " + d.hex() +
                                             " does not match the image name");
  }
  if (lease) {
    CFS_ASSIGN(plan.lease, begin_lease(repo, plan.image, kind, mountpoint));
  }
  return plan;
}

Result<MountPlan> prepare_unregistered_mount(Repository& repo, const verity::Digest& image,
                                             MountKind kind, const std::string& mountpoint) {
  MountPlan plan;
  plan.image = image;
  plan.image_path = repo.path() + "/" + repo.object_path(image);
  plan.objects_dir = repo.path() + "/" + std::string(kObjectsDir);
  plan.require_verity = repo.secure();
  CFS_ASSIGN(plan.lease, begin_lease(repo, plan.image, kind, mountpoint));
  return plan;
}

Status complete_lease(Repository& repo, Lease& lease) {
  CFS_ASSIGN(auto mounts, sys::read_mountinfo("/proc/self/mountinfo"));
  const sys::MountInfo* top = nullptr;
  for (const auto& m : mounts)
    if (m.mount_point == lease.mountpoint) top = &m;
  if (!top) return fail(Errc::kInvalidInput, lease.mountpoint + ": no mount there to record");
  lease.mount_id = top->mount_id;
  lease.dev = top->dev;
  if (lease.kind == MountKind::kKernel) {
    // The kernel's own mount can be stat'ed (a FUSE mount would wait for its server).
    auto id = sys::mount_identity(AT_FDCWD, lease.mountpoint);
    if (id && id->mount_id == top->mount_id) lease.unique_id = id->unique_id;
  } else {
    lease.pid = ::getpid();
    CFS_ASSIGN(lease.pid_start, sys::process_start_time(*lease.pid));
  }
  return store(repo, lease);
}

Status drop_lease(Repository& repo, const Lease& lease) {
  auto st = sys::unlinkat(repo.fd(), std::string(kMountsDir) + "/" + lease.id, 0);
  if (!st && st.error().is_errno(ENOENT)) return {};
  return st;
}

Result<std::vector<Lease>> list_leases(const Repository& repo) {
  std::vector<Lease> out;
  auto dir = sys::openat(repo.fd(), std::string(kMountsDir), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (!dir) {
    if (dir.error().is_errno(ENOENT)) return out;
    return fail(std::move(dir).error());
  }
  CFS_ASSIGN(auto entries, sys::list_dir(dir->get(), repo.path() + "/cfs-mounts"));
  for (const auto& entry : entries) {
    const auto& name = entry.first;  // not a binding: the lambda below captures it (clang < 16)
    if (names::is_temp(name)) continue;
    auto text = sys::openat(dir->get(), name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK)
                    .and_then([&](UniqueFd fd) { return sys::read_fd(fd.get(), name); });
    std::optional<Lease> l;
    if (text && text->size() < 65536) l = parse(name, *text);
    if (!l) {
      l.emplace();
      l->id = name;  // unreadable: image stays empty
    }
    out.push_back(std::move(*l));
  }
  std::sort(out.begin(), out.end(), [](const Lease& a, const Lease& b) { return a.id < b.id; });
  return out;
}

bool lease_live(const Lease& lease, std::string* why) {
  auto stale = [&](std::string reason) {
    if (why) *why = std::move(reason);
    return false;
  };
  if (lease.image.empty()) return stale("unreadable lease");
  if (lease.boot_id != boot_id()) return stale("made before the last boot");
  auto info_path = mountinfo_for(lease.mnt_ns);
  if (!info_path) return true;  // cannot tell: keep it
  if (!*info_path) return stale("its mount namespace is gone");
  auto mounts = sys::read_mountinfo(**info_path);
  if (!mounts) {
    // The process we looked at exited meanwhile; a later GC will look again.
    return true;
  }
  if (lease.unique_id && lease.mnt_ns == namespace_of("/proc/self").value_or(0)) {
    if (auto exists = sys::unique_mount_exists(*lease.unique_id)) {
      if (!*exists) return stale("unmounted from " + lease.mountpoint);
      return true;
    }
  }
  if (!lease.mount_id) {
    for (const auto& m : *mounts)
      if (m.mount_point == lease.mountpoint) return true;
    return stale("the mount was never completed and nothing is mounted on " + lease.mountpoint);
  }
  bool found = false;
  for (const auto& m : *mounts)
    if (m.mount_id == *lease.mount_id && m.dev == lease.dev.value_or(0)) found = true;
  if (!found) return stale("unmounted from " + lease.mountpoint);
  if (lease.kind == MountKind::kFuse && lease.pid) {
    auto start = sys::process_start_time(*lease.pid);
    if (start && (!*start || **start != lease.pid_start.value_or(0)))
      return stale("its FUSE server (pid " + std::to_string(*lease.pid) + ") is gone");
  }
  return true;
}

}  // namespace cfs::repo
