// `dynamicrad lut`: prints the built-in LUT or checks a LUT file, as JSON on stdout or into a file.
// `dynamicrad lut --out data/lut/default.json` regenerates the shipped copy of the built-in table.
#include <iostream>

#include "commands.h"
#include "dynamicrad/lut.h"
#include "flags.h"

namespace dynamicrad::cli {

int run_lut(const std::vector<std::string>& args) {
  FlagSet flags(
      "dynamicrad lut",
      "Prints a lookup table (LUT) as JSON: the built-in one, or a file after checking it\n"
      "(a bad file is reported with its field path and allowed range).",
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
  if (flags.given("out")) {
    save_lut(lut, flags.text("out"));
    std::cout << "wrote " << lut.entries.size() << " rows to " << flags.text("out") << "\n";
  } else {
    std::cout << lut_to_json(lut);
  }
  return 0;
}

}  // namespace dynamicrad::cli
