#include "flags.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <sstream>
#include <utility>

namespace dynamicrad::cli {

std::string join(const std::vector<std::string>& items, const std::string& separator) {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += separator;
    out += items[i];
  }
  return out;
}

FlagSet::FlagSet(std::string command, std::string summary, std::vector<FlagSpec> specs)
    : command_(std::move(command)), summary_(std::move(summary)), specs_(std::move(specs)) {}

const FlagSpec& FlagSet::spec(const std::string& name) const {
  for (const FlagSpec& s : specs_) {
    if (s.name == name) return s;
  }
  throw std::logic_error("flag --" + name + " is not in the table of " + command_);
}

void FlagSet::parse(const std::vector<std::string>& args) {
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& word = args[i];
    if (word == "--help" || word == "-h") {
      help_ = true;
      continue;
    }
    if (word.rfind("--", 0) != 0 || word.size() == 2) {
      // main() adds the pointer to --help.
      throw UsageError("unexpected argument '" + word + "' (flags start with --)");
    }
    const std::size_t eq = word.find('=');
    const std::string name = word.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
    const auto it = std::find_if(specs_.begin(), specs_.end(),
                                 [&](const FlagSpec& s) { return s.name == name; });
    if (it == specs_.end()) {
      std::vector<std::string> names;
      for (const FlagSpec& s : specs_) names.push_back("--" + s.name);
      throw UsageError("unknown flag --" + name + " for " + command_ + "; allowed flags are " +
                       join(names) + ", --help");
    }
    std::string value;
    if (it->placeholder.empty()) {
      if (eq != std::string::npos) {
        throw UsageError("--" + name + " is a switch and takes no value");
      }
      value = "true";
    } else if (eq != std::string::npos) {
      value = word.substr(eq + 1);
    } else {
      if (i + 1 >= args.size()) {
        throw UsageError("--" + name + " needs a value: --" + name + " " + it->placeholder);
      }
      value = args[++i];
    }
    if (!it->choices.empty() &&
        std::find(it->choices.begin(), it->choices.end(), value) == it->choices.end()) {
      throw UsageError("--" + name + " = '" + value + "': allowed values are " + join(it->choices));
    }
    values_[name] = value;
  }
}

bool FlagSet::given(const std::string& name) const {
  spec(name);
  return values_.count(name) > 0;
}

bool FlagSet::has(const std::string& name) const {
  return given(name) || !spec(name).default_value.empty();
}

std::string FlagSet::text(const std::string& name) const {
  const auto it = values_.find(name);
  return it != values_.end() ? it->second : spec(name).default_value;
}

bool FlagSet::on(const std::string& name) const { return given(name); }

std::int64_t FlagSet::integer(const std::string& name, std::int64_t min, std::int64_t max) const {
  const std::string value = text(name);
  const std::string allowed =
      "allowed range [" + std::to_string(min) + ", " + std::to_string(max) + "]";
  errno = 0;
  char* end = nullptr;
  const long long parsed = std::strtoll(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || errno == ERANGE) {
    throw UsageError("--" + name + " = '" + value + "': expected an integer, " + allowed);
  }
  if (parsed < min || parsed > max) {
    throw UsageError("--" + name + " = " + value + ": " + allowed);
  }
  return parsed;
}

double FlagSet::number(const std::string& name, double min, double max) const {
  const std::string value = text(name);
  std::ostringstream range;
  range << "allowed range [" << min << ", " << max << "]";
  char* end = nullptr;
  const double parsed = std::strtod(value.c_str(), &end);
  if (value.empty() || *end != '\0' || !std::isfinite(parsed)) {
    throw UsageError("--" + name + " = '" + value + "': expected a number, " + range.str());
  }
  if (parsed < min || parsed > max) {
    throw UsageError("--" + name + " = " + value + ": " + range.str());
  }
  return parsed;
}

bool FlagSet::boolean(const std::string& name) const {
  const std::string value = text(name);
  if (value == "true") return true;
  if (value == "false") return false;
  throw UsageError("--" + name + " = '" + value + "': allowed values are true, false");
}

std::string FlagSet::help() const {
  std::ostringstream out;
  out << "usage: " << command_ << " [flags]\n\n" << summary_ << "\n\nflags:\n";
  std::vector<std::string> heads;
  std::size_t width = 0;
  for (const FlagSpec& s : specs_) {
    heads.push_back("--" + s.name + (s.placeholder.empty() ? "" : " " + s.placeholder));
    width = std::max(width, heads.back().size());
  }
  const std::string help_head = "--help";
  width = std::max(width, help_head.size());
  for (std::size_t i = 0; i < specs_.size(); ++i) {
    const FlagSpec& s = specs_[i];
    out << "  " << heads[i] << std::string(width - heads[i].size() + 2, ' ') << s.help;
    if (!s.choices.empty()) out << " (" << join(s.choices, " | ") << ")";
    if (!s.default_value.empty()) out << " [default: " << s.default_value << "]";
    out << "\n";
  }
  out << "  " << help_head << std::string(width - help_head.size() + 2, ' ')
      << "print this help and exit\n";
  return out.str();
}

}  // namespace dynamicrad::cli
