// The subcommands of `dynamicrad`. Each takes the words after its name and returns the exit code;
// it throws UsageError for bad flags (exit 2) and dynamicrad::Error for failures (exit 1), which
// main() reports.
#pragma once

#include <string>
#include <vector>

namespace dynamicrad::cli {

int run_mask(const std::vector<std::string>& args);
int run_attend(const std::vector<std::string>& args);
int run_lut(const std::vector<std::string>& args);
int run_tune(const std::vector<std::string>& args);

}  // namespace dynamicrad::cli
