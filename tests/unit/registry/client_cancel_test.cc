// SPDX-License-Identifier: Apache-2.0
// Client::cancel() against local sockets standing for a registry that hangs (accepts, never
// answers) and one that is gone (refuses: the client waits between retries). The oracle is the
// kernel's socket behaviour; the bound is a hang detector, far above what cancelling takes.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <string>

#include "cfs/registry/client.h"

namespace cfs::registry {
namespace {

using namespace std::chrono_literals;

constexpr auto kHangBound = 10s;  // the fixed delays below are 20-30 s

/// A listening loopback socket nobody accepts on: connections complete (the kernel's backlog)
/// and requests, TLS hellos included, are never answered.
struct Silent {
  int fd = -1;
  int port = 0;
  Silent() {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), len) != 0 || ::listen(fd, 16) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
      return;
    port = ntohs(a.sin_port);
  }
  ~Silent() {
    if (fd >= 0) ::close(fd);
  }
};

Reference ref_at(int port) {
  auto r = parse_reference("docker://127.0.0.1:" + std::to_string(port) + "/cfs/x:v1");
  EXPECT_TRUE(r);
  return *r;
}

/// Without cancellation a call below would take 30-40 s (failing the test, not hanging it).
ClientOptions slow_options(unsigned retries) {
  ClientOptions o;
  o.tls.verify = false;  // https, then plain http: both paths wait
  o.connect_timeout_s = 20;
  o.low_speed_time_s = 20;
  o.retry = RetryOptions{retries, 30, 30};
  return o;
}

TEST(ClientCancel, EndsATransferTheRegistryNeverAnswers) {
  Silent server;
  ASSERT_GT(server.port, 0);
  auto client = Client::create(slow_options(0));
  ASSERT_TRUE(client);
  auto call =
      std::async(std::launch::async, [&] { return client->get_manifest(ref_at(server.port)); });
  ASSERT_EQ(call.wait_for(300ms), std::future_status::timeout);  // it is waiting
  client->cancel();
  ASSERT_EQ(call.wait_for(kHangBound), std::future_status::ready);
  auto m = call.get();
  ASSERT_FALSE(m);
  EXPECT_TRUE(m.error().is_errno(ECANCELED)) << m.error().message();
  // Later calls fail at once, without a transfer.
  auto again =
      std::async(std::launch::async, [&] { return client->get_manifest(ref_at(server.port)); });
  ASSERT_EQ(again.wait_for(kHangBound), std::future_status::ready);
  auto m2 = again.get();
  ASSERT_FALSE(m2);
  EXPECT_TRUE(m2.error().is_errno(ECANCELED)) << m2.error().message();
}

TEST(ClientCancel, EndsARetryWaitWhenTheRegistryIsGone) {
  int port = 0;
  {
    Silent closed;  // its port, free again once closed: connections are refused
    port = closed.port;
  }
  ASSERT_GT(port, 0);
  ClientOptions o = slow_options(1);
  o.cancel = std::make_shared<CancelToken>();  // shared with the caller
  auto token = o.cancel;
  auto client = Client::create(o);
  ASSERT_TRUE(client);
  auto call = std::async(std::launch::async, [&] { return client->get_manifest(ref_at(port)); });
  ASSERT_EQ(call.wait_for(300ms), std::future_status::timeout);  // refused, then waiting 30 s
  token->cancel();
  ASSERT_EQ(call.wait_for(kHangBound), std::future_status::ready);
  auto m = call.get();
  ASSERT_FALSE(m);
  // The retry wait ended early; the attempt after it was not made.
  EXPECT_TRUE(m.error().is_errno(ECANCELED)) << m.error().message();
}

TEST(CancelToken, WaitEndsAtCancel) {
  CancelToken token;
  EXPECT_FALSE(token.wait_for(0.01));
  auto waiter = std::async(std::launch::async, [&] { return token.wait_for(60); });
  ASSERT_EQ(waiter.wait_for(100ms), std::future_status::timeout);
  token.cancel();
  ASSERT_EQ(waiter.wait_for(kHangBound), std::future_status::ready);
  EXPECT_TRUE(waiter.get());
  EXPECT_TRUE(token.cancelled());
  EXPECT_TRUE(token.wait_for(60));  // at once once cancelled
}

}  // namespace
}  // namespace cfs::registry
