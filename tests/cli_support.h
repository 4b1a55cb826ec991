// A GoogleTest fixture that runs the `dynamicrad` command (path in DYNAMICRAD_CLI) in a scratch
// directory of its own and captures its exit code, stdout and stderr.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace dynamicrad::testing {

struct CliResult {
  int code = -1;
  std::string out;
  std::string err;
};

inline std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* cli = std::getenv("DYNAMICRAD_CLI");
    ASSERT_NE(cli, nullptr) << "DYNAMICRAD_CLI is not set";
    cli_ = cli;
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::filesystem::temp_directory_path() /
           ("dynamicrad_" + std::string(info->test_suite_name()) + "_" + info->name() + "_" +
            std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Runs `dynamicrad <args>` in the scratch directory (args pass through the shell as they are),
  // with `input` on stdin.
  CliResult run(const std::string& args, const std::string& input = "") const {
    const std::filesystem::path out = dir_ / "stdout.txt", err = dir_ / "stderr.txt", in = dir_ / "stdin.txt";
    std::ofstream(in) << input;
    const std::string command = "cd '" + dir_.string() + "' && '" + cli_ + "' " + args + " < '" + in.string() +
                                "' > '" + out.string() + "' 2> '" + err.string() + "'";
    const int status = std::system(command.c_str());
    CliResult r;
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = read_text(out);
    r.err = read_text(err);
    return r;
  }

  std::string cli_;
  std::filesystem::path dir_;
};

}  // namespace dynamicrad::testing
