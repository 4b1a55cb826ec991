// The `dynamicrad` command, run as a program (DYNAMICRAD_CLI): help, exit codes (0 ok, 1 runtime
// error, 2 usage error), error messages naming the flag or file, and small end-to-end runs.
#include <gtest/gtest.h>

#include "cli_support.h"
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <string>

#include "dynamicrad/lut.h"

namespace dynamicrad {
namespace {

namespace fs = std::filesystem;

using Result = testing::CliResult;
using testing::read_text;

class Cli : public testing::CliTest {};

void expect_mentions(const std::string& text, std::initializer_list<const char*> parts) {
  for (const char* part : parts) {
    EXPECT_NE(text.find(part), std::string::npos) << "'" << part << "' missing in:\n" << text;
  }
}

// A geometry that builds and runs in milliseconds.
const char* const kTiny = "--frames 2 --height 4 --width 8 --heads 2 --head-dim 16 --block 32";

TEST_F(Cli, TopLevelHelpAndVersion) {
  Result r = run("--help");
  EXPECT_EQ(r.code, 0);
  expect_mentions(r.out, {"usage: dynamicrad", "mask", "attend", "lut", "--version"});
  r = run("--version");
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out.rfind("dynamicrad ", 0), 0u) << r.out;
}

TEST_F(Cli, NoCommandOrUnknownCommandIsAUsageError) {
  Result r = run("");
  EXPECT_EQ(r.code, 2);
  expect_mentions(r.err, {"usage: dynamicrad"});
  r = run("paint");
  EXPECT_EQ(r.code, 2);
  expect_mentions(r.err, {"dynamicrad: error:", "paint", "mask, attend, lut"});
}

TEST_F(Cli, CommandHelpMentionsEveryFlag) {
  const char* shared[] = {"--preset",
                          "--frames",
                          "--height",
                          "--width",
                          "--text-tokens",
                          "--text-placement",
                          "--heads",
                          "--head-dim",
                          "--block",
                          "--order",
                          "--regime",
                          "--mode",
                          "--lut",
                          "--gamma",
                          "--lambda",
                          "--theta-m",
                          "--theta-c",
                          "--dense-adjacent",
                          "--first-frame-sink",
                          "--r-near",
                          "--r-far",
                          "--tau-near",
                          "--tau-far",
                          "--seed",
                          "--help"};
  Result mask = run("mask --help");
  EXPECT_EQ(mask.code, 0);
  for (const char* flag : shared) expect_mentions(mask.out, {flag});
  expect_mentions(mask.out, {"--head ", "--png", "--cell-pixels", "--no-frame-grid",
                             "wan2.1-14b-720p", "hunyuan-720p"});

  Result attend = run("attend --help");
  EXPECT_EQ(attend.code, 0);
  for (const char* flag : shared) expect_mentions(attend.out, {flag});
  expect_mentions(attend.out, {"--threads", "--repeats", "--recall-max-tokens"});

  Result lut = run("lut --help");
  EXPECT_EQ(lut.code, 0);
  expect_mentions(lut.out, {"--lut", "--out", "--help"});
}

TEST_F(Cli, UnknownFlagIsAUsageErrorNamingIt) {
  for (const char* command : {"mask", "attend", "lut"}) {
    const Result r = run(std::string(command) + " --bogus 3");
    EXPECT_EQ(r.code, 2) << command;
    expect_mentions(r.err, {"dynamicrad: error:", "--bogus"});
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
}

TEST_F(Cli, BadValuesAreUsageErrorsNamingFlagAndAllowedValues) {
  struct Case {
    const char* args;
    const char* flag;
    const char* allowed;
  };
  const Case cases[] = {
      {"mask --block 48", "--block", "32, 64, 128"},
      {"mask --regime fast", "--regime", "low, mid, high"},
      {"mask --mode random", "--mode", "static-ratio, dynamic-threshold"},
      {"mask --preset sora", "--preset", "wan2.1-14b-480p"},
      {"mask --order zigzag", "--order", "raster, tiled3d"},
      {"mask --gamma -1", "--gamma", "(0, 16]"},
      {"mask --r-near 2", "--r-near", "[0, 1]"},
      {"mask --frames abc", "--frames", "integer"},
      {"mask --frames 0", "--frames", "[1, "},
      {"mask --text-placement suffix", "--text-tokens", "placement none"},
      {"mask --head 99", "--head", "[0, 11]"},
      {"mask --dense-adjacent yes", "--dense-adjacent", "true, false"},
      {"mask --tau-near 0.1", "--tau-near", "dynamic-threshold"},
      {"attend --threads -2", "--threads", "[0, 1024]"},
      {"attend --seed", "--seed", "needs a value"},
      {"mask --no-frame-grid=1", "--no-frame-grid", "takes no value"},
  };
  for (const Case& c : cases) {
    const Result r = run(c.args);
    EXPECT_EQ(r.code, 2) << c.args << "\n" << r.err;
    expect_mentions(r.err, {"dynamicrad: error:", c.flag, c.allowed});
  }
}

TEST_F(Cli, MaskWritesAPictureAndPrintsStatistics) {
  const Result r = run(std::string("mask ") + kTiny + " --png tiny.png --head 1 --no-frame-grid");
  ASSERT_EQ(r.code, 0) << r.err;
  expect_mentions(r.out, {"sparsity", "prior density", "build_radial_prior", "pool_blocks",
                          "select_blocks", "layout bytes", "frame distance", "tiny.png"});
  const std::string png = read_text(dir_ / "tiny.png");
  ASSERT_GE(png.size(), 8u);
  EXPECT_EQ(png.substr(1, 3), "PNG");
  EXPECT_FALSE(fs::exists(dir_ / "tiny.png.tmp"));
}

TEST_F(Cli, MaskWithPresetOverridesAndDynamicMode) {
  // A preset with its frame count cut down so that it runs fast.
  const Result r =
      run("mask --preset hunyuan-720p --frames 2 --height 8 --width 8 --heads 2 --regime high "
          "--tau-near 0.01 --png hy.png");
  ASSERT_EQ(r.code, 0) << r.err;
  expect_mentions(r.out, {"hunyuan-720p", "dynamic-threshold", "text tokens", "tau_near 0.01"});
}

TEST_F(Cli, AttendPrintsErrorAgainstTheReference) {
  const Result r = run(std::string("attend ") + kTiny + " --repeats 1 --threads 1");
  ASSERT_EQ(r.code, 0) << r.err;
  expect_mentions(
      r.out, {"sparsity", "relative L2 error", "attention-mass recall", "reference", "speedup"});
}

TEST_F(Cli, BadLutFileIsARuntimeErrorNamingTheFile) {
  {
    std::ofstream bad(dir_ / "bad.json");
    bad << "{\"format\": \"dynamicrad-lut\", \"version\": 7, \"rows\": []}";
  }
  Result r = run(std::string("mask ") + kTiny + " --lut bad.json");
  EXPECT_EQ(r.code, 1);
  expect_mentions(r.err, {"dynamicrad: error:", "bad.json", "version"});
  r = run("lut --lut missing.json");
  EXPECT_EQ(r.code, 1);
  expect_mentions(r.err, {"dynamicrad: error:", "missing.json"});
}

TEST_F(Cli, LutPrintsAndWritesTheBuiltInTable) {
  Result r = run("lut");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, lut_to_json(default_lut()));
  r = run("lut --out table.json");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(read_text(dir_ / "table.json"), lut_to_json(default_lut()));
  r = run("lut --lut table.json");
  EXPECT_EQ(r.code, 0) << r.err;
}

TEST_F(Cli, UnwritablePictureIsARuntimeError) {
  const Result r = run(std::string("mask ") + kTiny + " --png no/such/dir/m.png");
  EXPECT_EQ(r.code, 1);
  expect_mentions(r.err, {"dynamicrad: error:", "no/such/dir/m.png"});
}

}  // namespace
}  // namespace dynamicrad
