#include "output_path.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "dynamicrad/error.h"

namespace dynamicrad::cli {

void require_writable(const std::string& path) {
  namespace fs = std::filesystem;
  if (path.empty()) throw Error("path", "empty; expected a file path");
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);  // through symbolic links
  if (fs::is_directory(status)) throw Error(path, "is a directory; expected a file path");
  if (fs::exists(status) && !fs::is_regular_file(status)) {  // written in place
    if (::access(path.c_str(), W_OK) != 0) {
      throw Error(path, std::string("cannot write: ") + std::strerror(errno));
    }
    return;
  }
  // A new or regular file is replaced through a temporary in its folder.
  fs::path file = path;
  if (fs::is_symlink(fs::symlink_status(file, ec))) {
    const fs::path target = fs::weakly_canonical(file, ec);
    if (!ec) file = target;
  }
  const fs::path folder = file.has_parent_path() ? file.parent_path() : fs::path(".");
  if (!fs::is_directory(folder, ec)) {
    throw Error(path, "cannot write: " + folder.string() +
                          (fs::exists(folder, ec) ? " is not a folder" : " does not exist"));
  }
  if (::access(folder.c_str(), W_OK | X_OK) != 0) {
    throw Error(path, "cannot write into the folder " + folder.string() + ": " + std::strerror(errno));
  }
}

}  // namespace dynamicrad::cli
