// A minimal parallel loop for the CPU paths: tasks [0, n) are claimed from an atomic counter by
// `threads` workers (the calling thread is one of them). Exceptions from a task are rethrown on the
// calling thread after all workers stop. When the system refuses a thread, the loop goes on with the
// workers it has (results never depend on the number of workers).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

namespace dynamicrad::detail {

inline int resolve_threads(int requested) {
  if (requested > 0) return requested;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

// fn(task, worker) for every task in [0, n).
template <class Fn>
void parallel_for(std::int64_t n, int threads, Fn&& fn) {
  const int workers = static_cast<int>(std::min<std::int64_t>(std::max(1, threads), std::max<std::int64_t>(n, 1)));
  std::atomic<std::int64_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  const auto work = [&](int worker) {
    try {
      for (std::int64_t task = next++; task < n; task = next++) fn(task, worker);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
      next = n;
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(static_cast<std::size_t>(workers - 1));
  try {
    for (int w = 1; w < workers; ++w) pool.emplace_back(work, w);
  } catch (const std::system_error&) {
    // no more threads: the ones started and this one share the tasks
  }
  work(0);
  for (std::thread& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace dynamicrad::detail
