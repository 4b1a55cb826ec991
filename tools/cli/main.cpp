// `dynamicrad`: dispatches to a subcommand and maps failures to exit codes.
//   0 success, 1 runtime error (bad file, library failure), 2 usage error (bad command line).
// Errors go to stderr as "dynamicrad: error: ..."; reports go to stdout.
#include <exception>
#include <iostream>
#include <new>
#include <string>
#include <vector>

#include "commands.h"
#include "dynamicrad/error.h"
#include "flags.h"

namespace {

constexpr const char* kVersion = DYNAMICRAD_VERSION;  // the CMake project version

constexpr int kExitOk = 0;
constexpr int kExitRuntime = 1;
constexpr int kExitUsage = 2;

struct Command {
  const char* name;
  const char* summary;
  int (*run)(const std::vector<std::string>& args);
};

constexpr Command kCommands[] = {
    {"mask", "build a block mask for a video geometry, print its statistics and draw it as a PNG",
     dynamicrad::cli::run_mask},
    {"attend", "run dense and block-sparse attention on the CPU and compare error and time",
     dynamicrad::cli::run_attend},
    {"lut", "print, check or write a lookup table (LUT) of prior and selection parameters",
     dynamicrad::cli::run_lut},
    {"tune", "tune the LUT by Bayesian optimisation on the proxy task (offline; CPU, or --device cuda)",
     dynamicrad::cli::run_tune},
};

void print_usage(std::ostream& out) {
  out << "dynamicrad " << kVersion
      << ": block-sparse attention for video diffusion (DynamicRad)\n\n"
      << "usage: dynamicrad <command> [flags]\n"
      << "       dynamicrad --help | --version\n\ncommands:\n";
  for (const Command& c : kCommands) {
    const std::string name = c.name;
    out << "  " << name << std::string(10 - name.size(), ' ') << c.summary << "\n";
  }
  out << "\nrun 'dynamicrad <command> --help' for the flags of a command.\n";
}

int fail(int code, const std::string& message) {
  std::cerr << "dynamicrad: error: " << message << "\n";
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> words(argv + 1, argv + argc);
  if (words.empty()) {
    print_usage(std::cerr);
    return kExitUsage;
  }
  const std::string& first = words.front();
  if (first == "--help" || first == "-h" || first == "help") {
    print_usage(std::cout);
    return kExitOk;
  }
  if (first == "--version") {
    std::cout << "dynamicrad " << kVersion << "\n";
    return kExitOk;
  }
  for (const Command& c : kCommands) {
    if (first != c.name) continue;
    try {
      return c.run(std::vector<std::string>(words.begin() + 1, words.end()));
    } catch (const dynamicrad::cli::UsageError& e) {
      return fail(kExitUsage, std::string(e.what()) + " (see dynamicrad " + c.name + " --help)");
    } catch (const dynamicrad::Error& e) {
      return fail(kExitRuntime, e.what());
    } catch (const std::bad_alloc&) {
      return fail(kExitRuntime, "out of memory (try a smaller geometry)");
    } catch (const std::exception& e) {
      return fail(kExitRuntime, e.what());
    }
  }
  if (first.rfind("-", 0) == 0) {
    return fail(kExitUsage, "unknown option '" + first +
                                "'; allowed options before a command are --help, --version (see "
                                "dynamicrad --help)");
  }
  std::string names;
  for (const Command& c : kCommands) names += std::string(names.empty() ? "" : ", ") + c.name;
  return fail(kExitUsage, "unknown command '" + first + "'; allowed commands are " + names +
                              " (see dynamicrad --help)");
}
