#include "build/wrapper/dependency-file.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "common/error.h"

namespace suture::build::wrapper {
namespace {

namespace fs = std::filesystem;

// One rule's words after make's own unescaping: `\ ` and `\#` stand for the
// character, `$$` for `$`; a backslash before anything else stays (it is part
// of a path as gcc wrote it).
std::vector<std::string> words_of(std::string_view text) {
  std::vector<std::string> words;
  std::string word;
  auto flush = [&] {
    if (!word.empty()) words.push_back(std::move(word));
    word.clear();
  };
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\\' && i + 1 < text.size() && (text[i + 1] == ' ' || text[i + 1] == '#')) {
      word += text[++i];
    } else if (c == '$' && i + 1 < text.size() && text[i + 1] == '$') {
      word += '$';
      ++i;
    } else if (c == ' ' || c == '\t') {
      flush();
    } else {
      word += c;
    }
  }
  flush();
  return words;
}

// The colon that ends a rule's targets: the first one followed by a blank or
// the end of the rule (a drive-letter colon never appears on Linux, but a
// colon inside a file name is escaped by neither gcc nor clang; it is followed
// by a non-blank).
size_t rule_colon(std::string_view rule) {
  for (size_t i = 0; i < rule.size(); ++i)
    if (rule[i] == ':' && (i + 1 == rule.size() || rule[i + 1] == ' ' || rule[i + 1] == '\t')) return i;
  return std::string_view::npos;
}

}  // namespace

std::vector<std::string> parse_dependency_rules(std::string_view text) {
  // Join continuation lines first: a rule is one logical line.
  std::string joined;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 1 < text.size() && text[i + 1] == '\n') {
      joined += ' ';
      ++i;
    } else if (text[i] == '\\' && i + 2 < text.size() && text[i + 1] == '\r' && text[i + 2] == '\n') {
      joined += ' ';
      i += 2;
    } else {
      joined += text[i];
    }
  }
  std::vector<std::string> prerequisites;
  std::set<std::string> seen;
  std::stringstream lines(joined);
  std::string rule;
  while (std::getline(lines, rule)) {
    if (!rule.empty() && rule.back() == '\r') rule.pop_back();
    if (rule.find_first_not_of(" \t") == std::string::npos) continue;
    auto colon = rule_colon(rule);
    if (colon == std::string_view::npos) fail("dependency file: a rule without a colon: '{}'", rule);
    for (auto& w : words_of(std::string_view(rule).substr(colon + 1)))
      if (seen.insert(w).second) prerequisites.push_back(std::move(w));
  }
  return prerequisites;
}

std::optional<std::string> own_dependency_file(const CommandLine& line, const std::string& source_path) {
  if (!line.dependency_file) return std::nullopt;
  if (line.dependency_output) return *line.dependency_output;
  if (line.output) return without_extension(*line.output) + ".d";
  return without_extension(fs::path(source_path).filename().string()) + ".d";
}

std::optional<std::vector<std::string>> headers_from_file(const std::string& file, const std::string& source,
                                                          const std::string& cwd) {
  std::ifstream in(absolute_path(file, cwd), std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream text;
  text << in.rdbuf();
  std::vector<std::string> headers;
  try {
    auto source_abs = absolute_path(source, cwd);
    for (const auto& p : parse_dependency_rules(text.str())) {
      auto abs = absolute_path(p, cwd);
      if (abs != source_abs) headers.push_back(abs);
    }
  } catch (const std::exception&) {
    return std::nullopt;
  }
  return headers;
}

}  // namespace suture::build::wrapper
