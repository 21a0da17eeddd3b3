#include "coordinator/ops/prometheus_text.h"

#include <cmath>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace fedge {
namespace {

bool IsNameChar(char c, bool first) {
  return absl::ascii_isalpha(c) || c == '_' || c == ':' || (!first && absl::ascii_isdigit(c));
}

bool ParseValue(absl::string_view text, double* value) {
  if (text == "+Inf" || text == "Inf") {
    *value = std::numeric_limits<double>::infinity();
  } else if (text == "-Inf") {
    *value = -std::numeric_limits<double>::infinity();
  } else if (text == "NaN") {
    *value = std::numeric_limits<double>::quiet_NaN();
  } else {
    return absl::SimpleAtod(text, value) && !std::isnan(*value);
  }
  return true;
}

absl::Status ParseLine(absl::string_view line, PromSample* sample) {
  size_t i = 0;
  while (i < line.size() && IsNameChar(line[i], i == 0)) ++i;
  if (i == 0) return absl::InvalidArgumentError("expected a metric name");
  sample->name = std::string(line.substr(0, i));
  if (i < line.size() && line[i] == '{') {
    ++i;
    while (true) {
      while (i < line.size() && (line[i] == ' ' || line[i] == ',')) ++i;
      if (i < line.size() && line[i] == '}') {
        ++i;
        break;
      }
      const size_t start = i;
      while (i < line.size() && IsNameChar(line[i], i == start)) ++i;
      if (i == start || i + 1 >= line.size() || line[i] != '=' || line[i + 1] != '"') {
        return absl::InvalidArgumentError("expected label=\"value\"");
      }
      const std::string label(line.substr(start, i - start));
      i += 2;
      std::string value;
      while (i < line.size() && line[i] != '"') {
        if (line[i] == '\\' && i + 1 < line.size()) {
          ++i;
          value.push_back(line[i] == 'n' ? '\n' : line[i]);
        } else {
          value.push_back(line[i]);
        }
        ++i;
      }
      if (i >= line.size()) return absl::InvalidArgumentError("unterminated label value");
      ++i;  // the closing quote
      sample->labels[label] = value;
    }
  }
  std::vector<absl::string_view> rest =
      absl::StrSplit(line.substr(i), ' ', absl::SkipWhitespace());
  if (rest.empty() || rest.size() > 2) {
    return absl::InvalidArgumentError("expected a value and an optional timestamp");
  }
  if (!ParseValue(rest[0], &sample->value)) {
    return absl::InvalidArgumentError(absl::StrCat("bad value '", rest[0], "'"));
  }
  int64_t timestamp;
  if (rest.size() == 2 && !absl::SimpleAtoi(rest[1], &timestamp)) {
    return absl::InvalidArgumentError(absl::StrCat("bad timestamp '", rest[1], "'"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<PromSample>> ParsePrometheusText(const std::string& text) {
  std::vector<PromSample> samples;
  int number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    PromSample sample;
    if (absl::Status s = ParseLine(line, &sample); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("metrics line ", number, " '", line, "': ", s.message()));
    }
    samples.push_back(std::move(sample));
  }
  return samples;
}

std::optional<double> FindSample(const std::vector<PromSample>& samples, const std::string& name,
                                 const std::map<std::string, std::string>& labels) {
  for (const PromSample& s : samples) {
    if (s.name != name) continue;
    bool match = true;
    for (const auto& [k, v] : labels) {
      auto it = s.labels.find(k);
      if (it == s.labels.end() || it->second != v) match = false;
    }
    if (match) return s.value;
  }
  return std::nullopt;
}

}  // namespace fedge
