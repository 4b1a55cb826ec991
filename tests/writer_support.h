// What an atomic file writer (src/io/atomic_file) may leave behind: it writes ".<name>.XXXXXX" beside
// the target and renames it over the target, so a hidden entry left in the folder is a leftover
// temporary.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace dr_test {

// The hidden entries (names starting with '.') of `dir`.
inline std::vector<std::string> temporaries(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  for (const std::filesystem::directory_entry& e : std::filesystem::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (!name.empty() && name[0] == '.') names.push_back(name);
  }
  return names;
}

}  // namespace dr_test
