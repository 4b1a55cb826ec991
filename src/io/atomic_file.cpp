// Writing output files (atomic_file.h).
#include "io/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>

#include "dynamicrad/error.h"

namespace dynamicrad::detail {
namespace {

namespace fs = std::filesystem;

constexpr int kMaxLinks = 40;            // links followed before giving up (Linux's own limit)
constexpr int kTemporaryAttempts = 100;  // names tried before giving up on a unique temporary
// Keeps ".<name>.XXXXXX" within the 255 bytes a file name may have.
constexpr std::size_t kMaxStemBytes = 200;

std::string errno_text() { return std::strerror(errno); }

// Where a write lands: the file itself, or in place (no temporary, no rename), maybe through a
// descriptor this process has open.
struct Target {
  fs::path file;
  bool in_place = false;
  int descriptor = -1;
};

// N for /proc/self/fd/N and /proc/<this process>/fd/N, else -1.
int own_descriptor(const fs::path& p) {
  const std::string text = p.string();
  for (const std::string& prefix : {std::string("/proc/self/fd/"),
                                    "/proc/" + std::to_string(::getpid()) + "/fd/"}) {
    if (text.rfind(prefix, 0) != 0) continue;
    const std::string digits = text.substr(prefix.size());
    if (digits.empty() || digits.size() > 9 ||
        digits.find_first_not_of("0123456789") != std::string::npos) {
      return -1;
    }
    return std::stoi(digits);
  }
  return -1;
}

// Symbolic links are followed, also a dangling last one (its target is created), relative links read
// from the link's folder. A path into /proc (/dev/stdout, /dev/fd/N) names a file a process has
// open, maybe a pipe, not a place in a folder: it is written in place, and one of this process's own
// descriptors through a copy of it, so that /dev/stdout continues stdout where it stands.
Target resolve(const std::string& path) {
  if (path.empty()) throw Error("path", "empty; expected a file path");
  fs::path p = path;
  for (int hop = 0; hop < kMaxLinks; ++hop) {
    std::error_code ec;
    if (p.has_parent_path()) {  // the folder's own links resolved: /dev/fd/1 is /proc/<pid>/fd/1
      const fs::path folder = fs::canonical(p.parent_path(), ec);
      if (!ec) p = folder / p.filename();
    }
    if (p.string().rfind("/proc/", 0) == 0) return {p, true, own_descriptor(p)};
    if (!fs::is_symlink(fs::symlink_status(p, ec))) {
      const fs::file_status status = fs::status(p, ec);
      if (fs::is_directory(status)) throw FileError(path, "is a directory; expected a file path");
      return {p, fs::exists(status) && !fs::is_regular_file(status)};
    }
    const fs::path target = fs::read_symlink(p, ec);
    if (ec) throw FileError(path, "cannot read the symbolic link " + p.string() + ": " + ec.message());
    p = target.is_absolute() ? target : p.parent_path() / target;
  }
  throw FileError(path, "too many levels of symbolic links");
}

// Closes `file` after `write`; returns the first failure's reason, or "".
std::string write_and_close(std::FILE* file, const FileWriter& write) {
  std::string reason = write(file);
  errno = 0;
  if (std::fclose(file) != 0 && reason.empty()) reason = errno_text();
  return reason;
}

// A FIFO, a device, a socket or an open file of /proc: written where it is.
void write_in_place(const std::string& path, const Target& target, const FileWriter& write) {
  std::FILE* file = nullptr;
  if (target.descriptor >= 0) {
    const int copy = ::dup(target.descriptor);
    file = copy < 0 ? nullptr : ::fdopen(copy, "wb");
    if (file == nullptr && copy >= 0) ::close(copy);
  } else {
    file = std::fopen(target.file.c_str(), "wb");
  }
  if (file == nullptr) throw FileError(path, "cannot open for writing: " + errno_text());
  const std::string reason = write_and_close(file, write);
  if (!reason.empty()) throw FileError(path, "cannot write: " + reason);
}

// Creates a new ".<name>.XXXXXX" beside `target` (permissions 0666 less the umask, like any new
// file); returns its descriptor, or -1 with errno set.
int create_temporary(const fs::path& target, fs::path* temporary) {
  static constexpr char kLetters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  const fs::path folder = target.has_parent_path() ? target.parent_path() : fs::path(".");
  const std::string stem = "." + target.filename().string().substr(0, kMaxStemBytes) + ".";
  std::random_device seed;
  std::mt19937 rng(seed());
  std::uniform_int_distribution<std::size_t> letter(0, sizeof kLetters - 2);
  for (int attempt = 0; attempt < kTemporaryAttempts; ++attempt) {
    std::string name = stem;
    for (int i = 0; i < 6; ++i) name += kLetters[letter(rng)];
    *temporary = folder / name;
    const int fd = ::open(temporary->c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0 || errno != EEXIST) return fd;
  }
  return -1;  // errno is EEXIST
}

// A regular file or a new one: a temporary beside it renamed over it.
void write_replacing(const std::string& path, const fs::path& target, const FileWriter& write) {
  fs::path temporary;
  const int fd = create_temporary(target, &temporary);
  if (fd < 0) throw FileError(path, "cannot open for writing: " + errno_text());
  std::FILE* file = ::fdopen(fd, "wb");
  std::string reason;
  if (file == nullptr) {
    reason = errno_text();
    ::close(fd);
  } else {
    reason = write_and_close(file, write);
  }
  std::string problem;
  if (!reason.empty()) {
    problem = "cannot write: " + reason;
  } else if (std::rename(temporary.c_str(), target.c_str()) != 0) {
    problem = "cannot replace the file: " + errno_text();
  }
  if (!problem.empty()) {
    ::unlink(temporary.c_str());
    throw FileError(path, problem);
  }
}

}  // namespace

void write_file(const std::string& path, const FileWriter& write) {
  const Target target = resolve(path);
  if (target.in_place) {
    write_in_place(path, target, write);
  } else {
    write_replacing(path, target.file, write);
  }
}

void write_text_file(const std::string& path, const std::string& text) {
  write_file(path, [&](std::FILE* file) -> std::string {
    if (std::fwrite(text.data(), 1, text.size(), file) != text.size() || std::fflush(file) != 0) {
      return errno_text();
    }
    return "";
  });
}

}  // namespace dynamicrad::detail
