// The made-ahead pool: handed out once each, in order; a failure stops the
// filling for good; drain destroys what is ready and nothing is made after.
#include <boost/test/unit_test.hpp>

#include "sandbox/made_ahead.hpp"

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

using kiln::sandbox::made_ahead;

namespace {

// Takes until something comes or about two seconds pass.
template <class T>
std::optional<T> take_soon(made_ahead<T>& pool) {
  for (int i = 0; i < 2000; ++i) {
    if (auto got = pool.take())
      return got;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return std::nullopt;
}

// Counts how many of its kind are alive.
struct counted {
  counted(std::shared_ptr<std::atomic<int>> count, int number) : alive(std::move(count)), n(number) { ++*alive; }
  counted(counted&& o) noexcept : alive(std::move(o.alive)), n(o.n) {}
  ~counted() {
    if (alive)
      --*alive;
  }
  std::shared_ptr<std::atomic<int>> alive;
  int n;
};

} // namespace

BOOST_AUTO_TEST_CASE(each_is_handed_out_once_in_order) {
  std::atomic<int> made{0};
  made_ahead<int> pool(2, [&]() -> std::optional<int> { return ++made; });
  for (int want = 1; want <= 5; ++want) {
    auto got = take_soon(pool);
    BOOST_REQUIRE(got);
    BOOST_CHECK_EQUAL(*got, want);
  }
  pool.drain();
  BOOST_CHECK(made.load() <= 5 + 2); // never more than the target ahead
}

BOOST_AUTO_TEST_CASE(a_failure_stops_the_filling) {
  std::atomic<int> made{0};
  made_ahead<int> pool(4, [&]() -> std::optional<int> {
    if (made == 2)
      return std::nullopt;
    return ++made;
  });
  BOOST_CHECK_EQUAL(take_soon(pool).value_or(0), 1);
  BOOST_CHECK_EQUAL(take_soon(pool).value_or(0), 2);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  BOOST_CHECK(!pool.take());
  BOOST_CHECK_EQUAL(made.load(), 2);
  pool.drain();
}

BOOST_AUTO_TEST_CASE(drain_destroys_the_ready_ones_and_stops) {
  auto alive = std::make_shared<std::atomic<int>>(0);
  int n = 0;
  made_ahead<counted> pool(3, [&]() -> std::optional<counted> { return counted(alive, ++n); });
  auto first = take_soon(pool);
  BOOST_REQUIRE(first);
  for (int i = 0; i < 2000 && alive->load() < 4; ++i) // the taken one and three ready
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  BOOST_CHECK_EQUAL(alive->load(), 4);
  pool.drain();
  BOOST_CHECK_EQUAL(alive->load(), 1); // only the one handed out
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  BOOST_CHECK(!pool.take());
  BOOST_CHECK_EQUAL(alive->load(), 1);
}
