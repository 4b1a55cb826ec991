// Reading what a writer puts into a FIFO, for tests of writers that must write such a target in
// place. The test holds a write end of its own while the writer runs, so a writer that never opens
// the FIFO leaves the read empty instead of blocking the test forever.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <string>
#include <thread>

namespace dynamicrad::testing {

// Makes a FIFO at `fifo`, runs `write` while a thread reads the FIFO, and returns what was read.
inline std::string read_fifo_while(const std::filesystem::path& fifo, const std::function<void()>& write) {
  if (::mkfifo(fifo.c_str(), 0600) != 0) {
    ADD_FAILURE() << "mkfifo " << fifo;
    return "";
  }
  const int reader = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK);  // does not wait for a writer
  const int keeper = ::open(fifo.c_str(), O_WRONLY);               // a reader exists: no wait
  if (reader < 0 || keeper < 0) {
    ADD_FAILURE() << "cannot open " << fifo;
    return "";
  }
  ::fcntl(reader, F_SETFL, ::fcntl(reader, F_GETFL) & ~O_NONBLOCK);
  std::string data;
  std::thread thread([&] {
    char buffer[4096];
    ssize_t n = 0;
    while ((n = ::read(reader, buffer, sizeof buffer)) > 0) data.append(buffer, static_cast<std::size_t>(n));
  });
  try {
    write();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "the write threw: " << e.what();
  }
  ::close(keeper);  // the read ends once every writer has closed
  thread.join();
  ::close(reader);
  return data;
}

}  // namespace dynamicrad::testing
