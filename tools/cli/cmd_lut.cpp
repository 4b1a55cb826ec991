// `dynamicrad lut`: prints the built-in LUT or checks a LUT file, as JSON on stdout or into a file.
// `dynamicrad lut --out data/lut/default.json` regenerates the shipped copy of the built-in table.
#include <iostream>
#include <string>
#include <vector>

#include "commands.h"
#include "dynamicrad/lut.h"
#include "flags.h"

namespace dynamicrad::cli {
namespace {

// The (regime, mode) rows of the full grid that `lut` lacks, as "high / dynamic-threshold", the
// regime's default mode marked.
std::vector<std::string> missing_rows(const Lut& lut) {
  std::vector<std::string> missing;
  for (MotionRegime regime : {MotionRegime::low, MotionRegime::mid, MotionRegime::high}) {
    for (SelectionMode mode : {SelectionMode::static_ratio, SelectionMode::dynamic_threshold}) {
      bool found = false;
      for (const LutEntry& e : lut.entries) found = found || (e.regime == regime && e.selection.mode == mode);
      if (found) continue;
      missing.push_back(to_string(regime) + " / " + to_string(mode) +
                        (mode == default_mode(regime) ? " (the regime's default mode)" : ""));
    }
  }
  return missing;
}

}  // namespace

int run_lut(const std::vector<std::string>& args) {
  FlagSet flags(
      "dynamicrad lut",
      "Prints a lookup table (LUT) as JSON: the built-in one, or a file after checking it\n"
      "(a bad file is reported with its field path and allowed range; exit code 1). A valid\n"
      "file that lacks some (regime, mode) rows of the full grid, as `tune --regimes` or\n"
      "`--modes` write, is accepted (exit code 0) and the missing rows are listed on stderr:\n"
      "runs that ask for one of them fail.",
      {
          {"lut", "FILE", "LUT JSON file to check [default: the built-in table]", "", {}},
          {"out", "FILE", "write the JSON here (atomically) instead of to stdout", "", {}},
      });
  flags.parse(args);
  if (flags.help_requested()) {
    std::cout << flags.help();
    return 0;
  }
  const Lut lut = flags.given("lut") ? load_lut(flags.text("lut")) : default_lut();
  for (const std::string& row : missing_rows(lut)) {
    std::cerr << "dynamicrad: warning: " << flags.text("lut") << ": no row for " << row << "\n";
  }
  if (flags.given("out")) {
    save_lut(lut, flags.text("out"));
    std::cout << "wrote " << lut.entries.size() << " rows to " << flags.text("out") << "\n";
  } else {
    std::cout << lut_to_json(lut);
  }
  return 0;
}

}  // namespace dynamicrad::cli
