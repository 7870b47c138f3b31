// What the runs of one engine_host (kilnd's clients) share of their goals:
// - Offers: a run's goal for a derivation, under the build options it runs
//   with (a profile), that another run wanting the same derivation with
//   the same options joins instead of starting a goal of its own (design:
//   "a second request for the same derivation joins the existing goal").
// - Interest: which derivations each run still wants, counted across runs.
//   A run that is cancelled (its client hung up, or a build failed without
//   --keep-going) withdraws its interest and cancels only the goals nobody
//   else wants; the others, and what they wait for, go on for their sake.
#pragma once

#include "messages/interfaces.hpp"

#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

namespace kiln {

class shared_goals {
public:
  void add_interest(const std::string& drv);
  void remove_interest(const std::string& drv);
  // True if some run (not cancelled) wants `drv`.
  bool wanted(const std::string& drv) const;

  // Offers `owner`'s goal for `drv` under `profile`, unless another run
  // offers one already.
  void offer(const std::string& profile, const std::string& drv, const scheduler_actor& owner);
  void withdraw(const std::string& profile, const std::string& drv, const scheduler_actor& owner);
  // The scheduler of another run that offers a goal for `drv` under
  // `profile`, with an interest in `drv` counted for the joiner in the same
  // step (it gives it back when the joined goal has answered).
  std::optional<scheduler_actor> join(const std::string& profile, const std::string& drv, const scheduler_actor& me);

private:
  mutable std::mutex mutex_;
  std::map<std::string, unsigned> interest_;
  std::map<std::pair<std::string, std::string>, scheduler_actor> offers_;
};

} // namespace kiln
