#include <atomic>
#include <cmath>

#include "coordinator/ops/http_client.h"
#include "coordinator/ops/http_server.h"
#include "coordinator/ops/prometheus_text.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::testing::HasSubstr;

std::string Url(const HttpServer& server, const std::string& path) {
  return "http://127.0.0.1:" + std::to_string(server.port()) + path;
}

TEST(HttpServerTest, ServesHandlersAndAnswersUnknownPathsWith404) {
  std::atomic<int> calls{0};
  HttpServerOptions options;
  options.handlers["/hello"] = [&] {
    ++calls;
    return HttpResponse{200, "text/plain", "hi " + std::to_string(calls.load())};
  };
  options.handlers["/down"] = [] { return HttpResponse{503, "text/plain", "not yet"}; };
  absl::StatusOr<std::unique_ptr<HttpServer>> server = HttpServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_GT((*server)->port(), 0);

  absl::StatusOr<HttpResponse> r = HttpGet(Url(**server, "/hello"), absl::Seconds(5));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "hi 1");
  r = HttpGet(Url(**server, "/hello"), absl::Seconds(5));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->body, "hi 2");

  r = HttpGet(Url(**server, "/down"), absl::Seconds(5));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(r->body, "not yet");

  r = HttpGet(Url(**server, "/nope"), absl::Seconds(5));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 404);
  EXPECT_THAT(r->body, HasSubstr("/hello"));
}

TEST(HttpServerTest, RefusesBadAddressesAndBusyPorts) {
  HttpServerOptions options;
  options.address = "127.0.0.1:99999";
  EXPECT_EQ(HttpServer::Start(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.address = "localhost:http";
  EXPECT_EQ(HttpServer::Start(options).status().code(), absl::StatusCode::kInvalidArgument);

  options.address = "127.0.0.1:0";
  absl::StatusOr<std::unique_ptr<HttpServer>> first = HttpServer::Start(options);
  ASSERT_TRUE(first.ok()) << first.status();
  options.address = "127.0.0.1:" + std::to_string((*first)->port());
  absl::StatusOr<std::unique_ptr<HttpServer>> second = HttpServer::Start(options);
  EXPECT_FALSE(second.ok());
}

TEST(HttpClientTest, RefusedConnectionIsAnError) {
  int port = 0;
  {
    absl::StatusOr<std::unique_ptr<HttpServer>> server = HttpServer::Start({});
    ASSERT_TRUE(server.ok());
    port = (*server)->port();
  }  // stopped: nothing listens there now
  absl::StatusOr<HttpResponse> r =
      HttpGet("http://127.0.0.1:" + std::to_string(port) + "/metrics", absl::Seconds(2));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
}

TEST(HttpClientTest, UrlsThatAreNotHttpAreRefused) {
  for (const char* url : {"127.0.0.1:9464/metrics", "ftp://127.0.0.1/metrics", "", "http//x"}) {
    EXPECT_EQ(HttpGet(url, absl::Seconds(1)).status().code(), absl::StatusCode::kInvalidArgument)
        << url;
  }
}

TEST(HttpClientTest, BodyOverTheLimitIsAnError) {
  HttpServerOptions options;
  options.handlers["/big"] = [] { return HttpResponse{200, "text/plain", std::string(100000, 'x')}; };
  absl::StatusOr<std::unique_ptr<HttpServer>> server = HttpServer::Start(options);
  ASSERT_TRUE(server.ok());
  EXPECT_EQ(HttpGet(Url(**server, "/big"), absl::Seconds(5), 1000).status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST(PrometheusTextTest, ParsesSamplesLabelsAndSpecialValues) {
  absl::StatusOr<std::vector<PromSample>> samples = ParsePrometheusText(
      "# HELP fedge_agents_live Agents.\n"
      "# TYPE fedge_agents_live gauge\n"
      "fedge_agents_live 7\n"
      "fedge_updates_rejected_total{reason=\"non_finite\"} 2 1700000000000\n"
      "fedge_phase{phase=\"learn-precision\",x=\"a\\\"b\"} 1\n"
      "fedge_round_duration_seconds_bucket{le=\"+Inf\"} 3\n"
      "fedge_model_test_accuracy -Inf\n");
  ASSERT_TRUE(samples.ok()) << samples.status();
  ASSERT_EQ(samples->size(), 5u);
  EXPECT_EQ(FindSample(*samples, "fedge_agents_live"), 7);
  EXPECT_EQ(FindSample(*samples, "fedge_updates_rejected_total", {{"reason", "non_finite"}}), 2);
  EXPECT_EQ(FindSample(*samples, "fedge_updates_rejected_total", {{"reason", "duplicate"}}),
            std::nullopt);
  EXPECT_EQ((*samples)[2].labels.at("x"), "a\"b");
  EXPECT_EQ(FindSample(*samples, "fedge_round_duration_seconds_bucket", {{"le", "+Inf"}}), 3);
  EXPECT_TRUE(std::isinf(*FindSample(*samples, "fedge_model_test_accuracy")));
}

TEST(PrometheusTextTest, MalformedLinesAreErrorsNamingTheLine) {
  for (const char* bad : {"fedge_x\n", "fedge_x{a=1} 2\n", "fedge_x{a=\"1} 2\n", "fedge_x abc\n",
                          "{a=\"b\"} 1\n", "fedge_x 1 2 3\n", "fedge_x 1 notatime\n"}) {
    absl::StatusOr<std::vector<PromSample>> samples = ParsePrometheusText(std::string("ok 1\n") + bad);
    EXPECT_FALSE(samples.ok()) << bad;
    EXPECT_THAT(samples.status().message(), HasSubstr("line 2")) << bad;
  }
}

}  // namespace
}  // namespace fedge
