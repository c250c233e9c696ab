// SPDX-License-Identifier: Apache-2.0
// Known-answer tests: every row of ../shared/compat/fsverity-vectors.tsv (digests produced by
// fsverity-utils and cross-checked by an independent implementation). The input of each row
// is rebuilt from its `generator` column.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "cfs/util/hex.h"
#include "cfs/verity/digest.h"
#include "cfs/verity/engine.h"
#include "cfs/verity/merkle.h"
#include "testutil/temp_dir.h"
#include "verity/leaves_internal.h"

namespace cfs::verity {
namespace {

struct Vector {
  std::string name, generator, hash, salt_hex, expected;
  std::uint64_t size = 0;
  std::uint32_t block_size = 0;
  std::string id() const {
    return name + " " + hash + " bs=" + std::to_string(block_size) + " salt=" + salt_hex;
  }
};

std::string vectors_path() { return std::string(CFS_SHARED_DIR) + "/compat/fsverity-vectors.tsv"; }

std::vector<Vector> load_vectors() {
  std::ifstream in(vectors_path());
  std::vector<Vector> out;
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    std::istringstream ls(line);
    Vector v;
    std::string size, bs;
    std::getline(ls, v.name, '\t');
    std::getline(ls, v.generator, '\t');
    std::getline(ls, size, '\t');
    std::getline(ls, v.hash, '\t');
    std::getline(ls, bs, '\t');
    std::getline(ls, v.salt_hex, '\t');
    std::getline(ls, v.expected, '\t');
    v.size = std::stoull(size);
    v.block_size = static_cast<std::uint32_t>(std::stoul(bs));
    out.push_back(v);
  }
  return out;
}

// The three generators documented in README-fsverity.md; anything else fails the test so a new
// kind of row cannot be skipped unnoticed.
bool generate(const Vector& v, std::vector<std::byte>& out) {
  out.resize(static_cast<std::size_t>(v.size));
  if (v.generator.find("of 0x00") != std::string::npos) {
    std::fill(out.begin(), out.end(), std::byte{0});
  } else if (v.generator.find("byte[i] = i % 251") != std::string::npos) {
    // Period 251: write one period, then double the filled prefix (fast under sanitizers).
    for (std::size_t i = 0; i < std::min<std::size_t>(251, out.size()); ++i)
      out[i] = static_cast<std::byte>(i);
    for (std::size_t done = std::min<std::size_t>(251, out.size()); done < out.size();) {
      const std::size_t n = std::min(done - done % 251, out.size() - done);
      std::memcpy(out.data() + done, out.data(), n);
      done += n;
    }
  } else if (v.generator.find("((i%11)+(i%439)+(i%1103)) & 0xff") != std::string::npos) {
    for (std::size_t i = 0; i < out.size(); ++i)
      out[i] = static_cast<std::byte>(((i % 11) + (i % 439) + (i % 1103)) & 0xff);
  } else {
    return false;
  }
  return v.generator.rfind(std::to_string(v.size) + " bytes", 0) == 0;
}

Params params_of(const Vector& v) {
  Params p;
  p.alg = v.hash == "sha512" ? HashAlg::kSha512 : HashAlg::kSha256;
  p.block_size = v.block_size;
  if (v.salt_hex != "-") p.salt = from_hex(v.salt_hex).value_or(std::vector<std::uint8_t>{});
  return p;
}

// Runs check(row, params, data) on every row, generating each input once.
template <typename Fn>
void for_each_row(Fn&& check) {
  const std::vector<Vector> rows = load_vectors();
  if (rows.empty()) GTEST_SKIP() << "no vectors: " << vectors_path() << " is missing or empty";
  ASSERT_EQ(rows.size(), 147u) << "vector file changed; README-fsverity.md says 147 rows";
  std::map<std::string, std::vector<std::byte>> inputs;
  for (const Vector& v : rows) {
    SCOPED_TRACE(v.id());
    ASSERT_TRUE(v.hash == "sha256" || v.hash == "sha512");
    if (v.salt_hex != "-") {
      ASSERT_TRUE(from_hex(v.salt_hex).has_value());
    }
    auto key = v.generator;
    auto it = inputs.find(key);
    if (it == inputs.end()) {
      if (inputs.size() > 2) inputs.clear();  // keep memory bounded (rows come grouped)
      std::vector<std::byte> data;
      ASSERT_TRUE(generate(v, data)) << "unknown generator: " << v.generator;
      it = inputs.emplace(key, std::move(data)).first;
    }
    check(v, params_of(v), it->second);
  }
}

TEST(Vectors, DigestBytesMatchesEveryRow) {
  for_each_row([](const Vector& v, const Params& p, const std::vector<std::byte>& data) {
    EXPECT_EQ(digest_bytes(data, p).hex(), v.expected);
  });
}

TEST(Vectors, StreamingInOddPiecesMatchesEveryRow) {
  for_each_row([](const Vector& v, const Params& p, const std::vector<std::byte>& data) {
    Hasher h(p);
    std::size_t piece = 1;
    for (std::size_t off = 0; off < data.size();) {
      const std::size_t n = std::min(piece, data.size() - off);
      h.update(std::span(data).subspan(off, n));
      off += n;
      piece = piece * 3 + 7;  // 1, 10, 37, ... crosses block boundaries in every phase
      if (piece > (1u << 20)) piece = 1;
    }
    EXPECT_EQ(h.size(), data.size());
    EXPECT_EQ(h.finish().hex(), v.expected);
  });
}

TEST(Vectors, MerkleTreeMatchesEveryRow) {
  for_each_row([](const Vector& v, const Params& p, const std::vector<std::byte>& data) {
    auto t = build_merkle_tree(data, p, 2);
    ASSERT_TRUE(t) << t.error().message();
    EXPECT_EQ(t->digest.hex(), v.expected);
  });
}

// MerkleBuilder (a lazy fetch's tree, built as the bytes arrive): pieces of every phase against
// the oracle's digest, and the same tree bytes as the whole-buffer build.
TEST(Vectors, MerkleBuilderInOddPiecesMatchesEveryRow) {
  for_each_row([](const Vector& v, const Params& p, const std::vector<std::byte>& data) {
    MerkleBuilder b(p, data.size());
    std::size_t piece = 1;
    for (std::size_t off = 0; off < data.size();) {
      const std::size_t n = std::min(piece, data.size() - off);
      ASSERT_TRUE(b.update(std::span(data).subspan(off, n)));
      off += n;
      piece = piece * 3 + 7;  // 1, 10, 37, ... crosses block boundaries in every phase
      if (piece > (1u << 20)) piece = 1;
    }
    EXPECT_EQ(b.size(), data.size());
    auto t = b.finish();
    ASSERT_TRUE(t) << t.error().message();
    EXPECT_EQ(t->digest.hex(), v.expected);
    EXPECT_EQ(t->data_size, data.size());
    if (data.size() > p.block_size && data.size() <= (8u << 20)) {
      auto whole = build_merkle_tree(data, p, 1);
      ASSERT_TRUE(whole);
      EXPECT_TRUE(t->tree == whole->tree);
    }
  });
}

TEST(Vectors, DigestFileWithThreadsMatchesEveryRow) {
  testutil::TempDir dir("cfs-vectors-");
  ASSERT_TRUE(dir.ok());
  const std::string path = dir / "input";
  std::string written_for;
  for_each_row([&](const Vector& v, const Params& p, const std::vector<std::byte>& data) {
    if (written_for != v.generator) {
      std::ofstream(path, std::ios::binary | std::ios::trunc)
          .write(reinterpret_cast<const char*>(data.data()),
                 static_cast<std::streamsize>(data.size()));
      written_for = v.generator;
    }
    // Large files are read through mapped windows or with pread: both against the oracle.
    for (const detail::ReadMode mode : {detail::ReadMode::kMap, detail::ReadMode::kPread}) {
      detail::set_read_mode(mode);
      for (unsigned threads : {1u, 2u}) {
        auto d = digest_file(path, p, threads);
        ASSERT_TRUE(d) << d.error().message();
        EXPECT_EQ(d->hex(), v.expected)
            << "threads=" << threads << (mode == detail::ReadMode::kMap ? " map" : " pread");
      }
    }
    detail::set_read_mode(detail::ReadMode::kAuto);
  });
}

TEST(Vectors, SmallBatchMatchesEveryRowWithATwoLevelTree) {
  // Rows of at most one block of leaf hashes' worth (a tree of at most two levels), grouped by
  // parameters, digested together; batches repeat rows cyclically so one call mixes lengths
  // and the empty input.
  struct Group {
    Params p;
    std::vector<std::vector<std::byte>> inputs;
    std::vector<std::string> expected, ids;
  };
  if (load_vectors().empty()) GTEST_SKIP() << "no vectors: " << vectors_path();
  std::map<std::string, Group> groups;
  for_each_row([&](const Vector& v, const Params& p, const std::vector<std::byte>& data) {
    if (data.size() > small_many_max(p)) return;
    Group& g = groups[v.hash + " " + std::to_string(v.block_size) + " " + v.salt_hex];
    g.p = p;
    g.inputs.push_back(data);
    g.expected.push_back(v.expected);
    g.ids.push_back(v.id());
  });
  std::size_t checked = 0;
  for (auto& [key, g] : groups) {
    for (int round = 0; round < 3; ++round) {
      // Round r digests the rows r..(r + kSmallBatchMax) cyclically.
      std::vector<std::span<const std::byte>> in;
      std::vector<std::size_t> which;
      for (std::size_t k = 0; k < kSmallBatchMax && k < 3 * g.inputs.size(); ++k) {
        const std::size_t i = (k + static_cast<std::size_t>(round)) % g.inputs.size();
        in.emplace_back(g.inputs[i]);
        which.push_back(i);
      }
      std::vector<Digest> out(in.size());
      digest_small_many(in, g.p, out);
      for (std::size_t k = 0; k < in.size(); ++k) {
        EXPECT_EQ(out[k].hex(), g.expected[which[k]]) << g.ids[which[k]] << " slot " << k;
        ++checked;
      }
    }
  }
  if (::testing::Test::IsSkipped()) return;  // no vector file: nothing was checked
  EXPECT_GT(checked, 100u);
}

TEST(Vectors, FileSegmentsMatchTheStreamingHasher) {
  // digest_fd hashes large files one segment at a time (8 MiB of leaf hashes: 128 MiB of data
  // for SHA-512 with 1 KiB blocks) and joins the segments through the streaming upper levels.
  // Cross the segment boundary, with data on both sides of it, against the one-pass Hasher.
  testutil::TempDir dir("cfs-vectors-");
  ASSERT_TRUE(dir.ok());
  const std::string path = dir / "input";
  Params p;
  p.alg = HashAlg::kSha512;
  p.block_size = 1024;
  constexpr std::size_t kSegment = (std::size_t{8} << 20) / 64 * 1024;
  std::vector<std::byte> data(kSegment + 5000);
  for (std::size_t i = 0; i < data.size(); i += 997) data[i] = static_cast<std::byte>(i % 251 + 1);
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  const Digest want = digest_bytes(data, p);
  for (unsigned threads : {1u, 2u}) {
    auto d = digest_file(path, p, threads);
    ASSERT_TRUE(d) << d.error().message();
    EXPECT_EQ(*d, want) << "threads=" << threads;
  }
}

TEST(Vectors, DigestFdUpToLeavesOnlyLargerFiles) {
  testutil::TempDir dir("cfs-vectors-");
  ASSERT_TRUE(dir.ok());
  const std::string path = dir / "input";
  for_each_row([&](const Vector& v, const Params& p, const std::vector<std::byte>& data) {
    std::ofstream(path, std::ios::binary | std::ios::trunc)
        .write(reinterpret_cast<const char*>(data.data()),
               static_cast<std::streamsize>(data.size()));
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    std::vector<std::byte> block(p.block_size + 1);
    auto small = read_one_block(fd, p, block, path);
    ASSERT_TRUE(small) << small.error().message();
    if (data.size() <= p.block_size) {
      ASSERT_TRUE(small->has_value());
      ASSERT_EQ(**small, data.size());
      EXPECT_TRUE(std::equal(data.begin(), data.end(), block.begin()));
    } else {
      EXPECT_FALSE(small->has_value());
    }
    auto at_size = digest_fd_up_to(fd, p, data.size(), path, 1);
    ASSERT_TRUE(at_size) << at_size.error().message();
    ASSERT_TRUE(at_size->has_value());
    EXPECT_EQ((*at_size)->hex(), v.expected);
    if (!data.empty()) {
      // One byte over the limit: left alone, unless one block holds it (always digested).
      auto over = digest_fd_up_to(fd, p, data.size() - 1, path, 1);
      ASSERT_TRUE(over) << over.error().message();
      if (data.size() <= p.block_size) {
        ASSERT_TRUE(over->has_value());
        EXPECT_EQ((*over)->hex(), v.expected);
      } else {
        EXPECT_FALSE(over->has_value());
      }
    }
    ::close(fd);
  });
}

// The other tests run the default engine on every row; here every engine the CPU has runs every
// row up to 10 MiB (all parameter sets; the 64 MiB rows would make this 8 GB of hashing).
TEST(Vectors, EveryEngineMatchesEveryRowUpTo10MiB) {
  for (Engine e : kAllEngines)
    if (!engine_available(e))
      std::cout << "skipped engine " << engine_name(e) << ": this CPU cannot run it\n";
  for_each_row([](const Vector& v, const Params& p, const std::vector<std::byte>& data) {
    if (v.size > (10u << 20)) return;
    for (Engine e : kAllEngines) {
      if (!set_engine(e)) continue;
      EXPECT_EQ(digest_bytes(data, p).hex(), v.expected) << engine_name(e);
    }
  });
  set_engine(Engine::kAuto);
}

}  // namespace
}  // namespace cfs::verity
