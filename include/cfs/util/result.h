// SPDX-License-Identifier: Apache-2.0
// Error values for the whole library: every fallible function returns Result<T> or Status.
// Exceptions are reserved for bad_alloc, programming errors and CLI parsing at main().
// Thread-safety: value types, safe to copy across threads.
#pragma once

#include <cerrno>
#include <string>
#include <system_error>
#include <tl/expected.hpp>
#include <utility>

namespace cfs {

/// Project-specific error conditions (format and semantic failures, not system errors).
enum class Errc {
  kCorruptImage = 1,    ///< an image or store object violates the format
  kUnsupportedFeature,  ///< valid input using something cfs (or the kernel) does not support
  kDigestMismatch,      ///< content does not match its recorded fs-verity digest
  kObjectMissing,       ///< a referenced backing object does not exist
  kInvalidInput,        ///< bad user input: dump syntax, option values, limits
  kConflict,            ///< mutually exclusive options
};

}  // namespace cfs

template <>
struct std::is_error_code_enum<cfs::Errc> : std::true_type {};

namespace cfs {

const std::error_category& cfs_category() noexcept;
std::error_code make_error_code(Errc e) noexcept;

/// An error code plus the context it happened in ("open /x/y", "dump line 12: field MODE").
class Error {
 public:
  Error(std::error_code code, std::string context) : code_(code), context_(std::move(context)) {}
  Error(Errc e, std::string context) : Error(make_error_code(e), std::move(context)) {}

  /// Builds an Error from an errno value (defaults to the current errno).
  static Error from_errno(std::string context, int err = errno) {
    return Error(std::error_code(err, std::generic_category()), std::move(context));
  }

  const std::error_code& code() const noexcept { return code_; }
  const std::string& context() const noexcept { return context_; }
  bool is(Errc e) const noexcept { return code_ == make_error_code(e); }
  bool is_errno(int err) const noexcept {
    return code_.category() == std::generic_category() && code_.value() == err;
  }

  /// "context: message", or just the message when there is no context.
  std::string message() const;

  /// Prepends more context: "outer: inner context".
  Error&& with_context(const std::string& outer) && {
    context_ = context_.empty() ? outer : outer + ": " + context_;
    return std::move(*this);
  }

 private:
  std::error_code code_;
  std::string context_;
};

template <typename T>
using Result = tl::expected<T, Error>;
using Status = Result<void>;

inline tl::unexpected<Error> fail(Errc e, std::string context) {
  return tl::unexpected<Error>(Error(e, std::move(context)));
}
inline tl::unexpected<Error> fail(Error err) { return tl::unexpected<Error>(std::move(err)); }
inline tl::unexpected<Error> fail_errno(std::string context, int err = errno) {
  return tl::unexpected<Error>(Error::from_errno(std::move(context), err));
}

}  // namespace cfs

/// Propagates an error from a Result/Status expression: CFS_TRY(f()); inside a function
/// returning Result<U> or Status.
#define CFS_TRY(expr)                                                       \
  do {                                                                      \
    if (auto&& cfs_try_r_ = (expr); !cfs_try_r_)                            \
      return ::tl::unexpected<::cfs::Error>(std::move(cfs_try_r_).error()); \
  } while (0)

/// CFS_TRY that adds context to the error it propagates ("outer: inner context"), like
/// composefs-rs' `.context("...")?`: CFS_TRY_CTX(store.sync(), "cannot fill store");
/// `ctx` (anything Error::with_context takes) is evaluated only on failure.
#define CFS_TRY_CTX(expr, ctx)                                                                  \
  do {                                                                                          \
    if (auto&& cfs_try_r_ = (expr); !cfs_try_r_)                                                \
      return ::tl::unexpected<::cfs::Error>(std::move(cfs_try_r_).error().with_context((ctx))); \
  } while (0)

/// Unwraps a Result into a new variable or propagates its error:
/// CFS_ASSIGN(auto fd, sys::open(path, O_RDONLY));
#define CFS_CONCAT_INNER_(a, b) a##b
#define CFS_CONCAT_(a, b) CFS_CONCAT_INNER_(a, b)
#define CFS_ASSIGN(decl, expr) CFS_ASSIGN_IMPL_(CFS_CONCAT_(cfs_res_, __LINE__), decl, expr)
#define CFS_ASSIGN_IMPL_(tmp, decl, expr)                                  \
  auto tmp = (expr);                                                       \
  if (!tmp) return ::tl::unexpected<::cfs::Error>(std::move(tmp).error()); \
  decl = std::move(*tmp)

/// CFS_ASSIGN that adds context to the error it propagates:
/// CFS_ASSIGN_CTX(auto img, Image::open(path), "image " + path);
#define CFS_ASSIGN_CTX(decl, expr, ctx) \
  CFS_ASSIGN_CTX_IMPL_(CFS_CONCAT_(cfs_res_, __LINE__), decl, expr, ctx)
#define CFS_ASSIGN_CTX_IMPL_(tmp, decl, expr, ctx)                                             \
  auto tmp = (expr);                                                                           \
  if (!tmp) return ::tl::unexpected<::cfs::Error>(std::move(tmp).error().with_context((ctx))); \
  decl = std::move(*tmp)
