// A declarative flag table for the `dynamicrad` command.
//
// Each subcommand lists its flags once (name, value placeholder, help, default, allowed values);
// the same table parses the command line, answers typed queries and prints --help, so the help text
// can never disagree with what is accepted. Flags are "--name VALUE" or "--name=VALUE"; a switch
// (no placeholder) takes no value. Parsing problems throw UsageError (exit code 2).
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace dynamicrad::cli {

// Bad command-line input: the message names the flag and what it allows.
class UsageError : public std::runtime_error {
 public:
  explicit UsageError(const std::string& message) : std::runtime_error(message) {}
};

struct FlagSpec {
  std::string name;         // without the leading "--"
  std::string placeholder;  // e.g. "N", "FILE"; empty for a switch
  std::string help;
  std::string default_value;         // shown in --help and returned when the flag is absent;
                                     // empty means "no value" (see FlagSet::has)
  std::vector<std::string> choices;  // allowed values; empty means any
};

class FlagSet {
 public:
  FlagSet(std::string command, std::string summary, std::vector<FlagSpec> specs);

  // Parses args (the words after the subcommand). Sets help_requested() on --help / -h.
  void parse(const std::vector<std::string>& args);
  bool help_requested() const { return help_; }
  std::string help() const;

  // True when the flag was given on the command line.
  bool given(const std::string& name) const;
  // True when the flag has a value (given, or a non-empty default).
  bool has(const std::string& name) const;

  std::string text(const std::string& name) const;
  bool on(const std::string& name) const;  // a switch
  // Typed values, checked against an inclusive range; errors name the flag and the range.
  std::int64_t integer(const std::string& name, std::int64_t min, std::int64_t max) const;
  double number(const std::string& name, double min, double max) const;
  bool boolean(const std::string& name) const;  // "true" / "false"

 private:
  const FlagSpec& spec(const std::string& name) const;

  std::string command_;
  std::string summary_;
  std::vector<FlagSpec> specs_;
  std::map<std::string, std::string> values_;  // given on the command line
  bool help_ = false;
};

// "a, b, c".
std::string join(const std::vector<std::string>& items, const std::string& separator = ", ");

}  // namespace dynamicrad::cli
