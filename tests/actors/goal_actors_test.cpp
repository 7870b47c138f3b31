// The engine's actor logic on CAF's deterministic test coordinator, with
// test doubles behind the typed interfaces for the store actor, the
// substituters, the logger and kilnd's worker pool (whose builders report,
// die before reporting, or hold their round until cancelled): the real
// scheduler and derivation goals between them, no processes, no sleeps.
// One file over 500 lines: the cases share their doubles, and each CAF
// test binary costs a slow compile and link of its own.
#define CAF_SUITE goal_actors
#include "caf/test/unit_test_impl.hpp"

#include "caf/test/dsl.hpp"

#include "actors/actors.hpp"

#include <stdlib.h>

#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

using namespace kiln;

namespace {

// Long enough never to fire unless a run hangs: then the test fails with a
// timeout instead of hanging.
constexpr auto answer_timeout = std::chrono::minutes(60);

struct engine_test_config : caf::actor_system_config {
  engine_test_config() { kiln::add_message_types(*this); }
};

std::string store_path_for(const std::string& name, char tag) {
  std::string hash(32, '0');
  hash[0] = tag;
  return "/nix/store/" + hash + "-" + name;
}

// The store's side of the world, as the doubles see it.
struct world {
  std::map<std::string, derivation> drvs; // by .drv path
  std::set<std::string> valid;            // output paths
  std::map<std::string, int> registered;  // .drv -> rounds registered
  std::set<std::string> read_ahead;       // as build_steps::load_closure: each derivation once
  int described = 0;
  std::set<std::string> built_meanwhile; // output paths the store finds valid when it looks again
};

// What the next builders leased do, in order ("report" once the plan is empty):
// report success, die before reporting (a lost worker), hold the round until
// cancelled, report that the builder failed (exit code 1), or report
// success and then die (a worker lost before the round's release), or
// answer the round with an error instead of a report.
enum class builder_plan { report, die, hold, fail, report_then_die, refuse };

// What the next substituters leased on workers do: answer every copy
// (substituted), or die at their first copy without answering (a lost worker).
enum class substituter_plan { answer, die };

struct plan_state {
  std::deque<builder_plan> plan;
  std::deque<substituter_plan> substituters;
  int substituter_leases = 0;
  int substituters_cancelled = 0; // told to the pool when the run's substituter pool ended
  int leases = 0, ignored_leases = 0; // `ignored`: leases never answered (a timeout's test)
  int cancels = 0;
  std::vector<std::string> log_events; // the workers' front flushed, the run's logger closed a log
  std::vector<std::pair<uint64_t, bool>> given_back; // leases given back to the pool, and if reusable
};

store_actor::behavior_type fake_store(store_actor::pointer self, std::shared_ptr<world> w) {
  auto load = [w](const std::string& drv) {
    loaded_derivation l;
    l.drv_path = drv;
    l.drv = w->drvs.at(drv);
    for (auto& [name, out] : l.drv.outputs)
      l.output_valid[name] = w->valid.count(out.path) > 0;
    return l;
  };
  return {
      [=](load_atom, const std::string& drv) { return load(drv); },
      [=](load_closure_atom, const std::string& drv) {
        std::vector<loaded_derivation> all{load(drv)};
        w->read_ahead.insert(drv);
        for (std::size_t i = 0; i < all.size(); ++i) {
          std::vector<std::string> inputs;
          for (auto& [input, outs] : all[i].drv.input_drvs)
            if (w->read_ahead.insert(input).second)
              inputs.push_back(input);
          for (auto& input : inputs)
            all.push_back(load(input));
        }
        return all;
      },
      [=](invalid_atom, const std::vector<std::string>& paths) {
        std::vector<std::string> out;
        for (auto& p : paths)
          if (!w->valid.count(p))
            out.push_back(p);
        return out;
      },
      [=](damaged_atom, const std::vector<std::string>&) { return std::vector<std::string>{}; },
      [=](describe_atom, const build_round& r, const std::set<std::string>& recheck) {
        ++w->described;
        build_request q;
        q.run = r;
        if (!recheck.empty()) {
          for (auto& [name, out] : r.drv.outputs)
            if (!w->valid.count(out.path) && !w->built_meanwhile.count(out.path))
              q.invalid_outputs.push_back(out.path);
          q.already_valid = q.invalid_outputs.empty();
        }
        return q;
      },
      [=](register_atom, const build_request& q, const build_report& report) {
        build_result r;
        r.path = q.run.drv_path;
        if (report.outcome.limit == builder_outcome::cancelled)
          return cancelled_result(q.run.drv_path);
        if (report.outcome.wait_status != 0) {
          r.status = build_status::permanent_failure;
          r.error = "builder for '" + r.path + "' failed";
          return r;
        }
        r.status = build_status::built;
        r.times_built = 1;
        for (auto& [name, out] : q.run.drv.outputs) {
          w->valid.insert(out.path);
          r.outputs[name] = out.path;
        }
        ++w->registered[q.run.drv_path];
        return r;
      },
  };
}

substituter_actor::behavior_type no_substituters() {
  auto none = [] { return substitute_outcome(substitute_outcome::absent, "no substituters here"); };
  return {
      [=](subst_atom, const std::string&, uint32_t, bool) { return none(); },
      [=](probe_atom, const std::string&, uint32_t) { return none(); },
      [=](subst_any_atom, const std::string&, bool) { return none(); },
  };
}

// Substituters as a substitute_any sees them through its pool, each doing
// one thing: has the path, has not, never answers a probe, is not trusted,
// or has it but fails to copy it.
enum class cache_plan { has, absent, silent, untrusted, broken };

struct caches_state {
  std::vector<cache_plan> plans;
  std::vector<uint32_t> copies; // the substituters copied from, in order
  int probes = 0;
};

one_substituter_actor::behavior_type fake_caches(one_substituter_actor::pointer self,
                                                 std::shared_ptr<caches_state> cs) {
  return {
      [=](probe_atom, const std::string&, uint32_t i) -> caf::result<substitute_outcome> {
        ++cs->probes;
        switch (cs->plans.at(i)) {
        case cache_plan::has:
        case cache_plan::broken:
          return substitute_outcome(substitute_outcome::available, "");
        case cache_plan::silent:
          return self->make_response_promise<substitute_outcome>(); // never delivered
        case cache_plan::untrusted:
          return substitute_outcome(substitute_outcome::untrusted, "cache " + std::to_string(i) + " is not trusted");
        default:
          return substitute_outcome(substitute_outcome::absent, "cache " + std::to_string(i) + " has not got it");
        }
      },
      [=](subst_atom, const std::string& path, uint32_t i, bool) -> caf::result<substitute_outcome> {
        cs->copies.push_back(i);
        if (cs->plans.at(i) == cache_plan::broken)
          return caf::make_error(engine_errc::store_failure, "cache " + std::to_string(i) + " sent garbage");
        return substitute_outcome::copied_from("cache" + std::to_string(i), {path});
      },
  };
}

logger_actor::behavior_type quiet_logger(std::shared_ptr<plan_state> ps) {
  return {
      [](log_open_atom, const std::string&, const std::string&, const std::string&) {},
      [](log_atom, const std::string&, const std::string& bytes) { return uint64_t(bytes.size()); },
      [=](log_close_atom, const std::string& drv) {
        ps->log_events.push_back("closed " + drv);
        return true;
      },
  };
}

// The front of the worker the fake pool's builders are on.
worker_front_actor::behavior_type fake_front(worker_front_actor::pointer self, std::shared_ptr<plan_state> ps) {
  return {
      [](log_open_atom, const std::string&, const std::string&, const std::string&) {},
      [](log_atom, const std::string&, const std::string& bytes) { return uint64_t(bytes.size()); },
      [](log_close_atom, const std::string&) { return true; },
      [=](flushed_atom) {
        ps->log_events.push_back("flushed");
        return true;
      },
      [](forget_atom, const std::string&, uint64_t) {},
      // Passed on as the real front does (with itself as the sender, which
      // this test cannot tell from the goal's).
      [=](run_atom, const builder_actor& b, uint64_t round, build_request& r, caf::timespan) {
        return self->delegate(b, run_atom::value, round, std::move(r));
      },
      [=](release_atom, const builder_actor& b, uint64_t round, bool keep, caf::timespan) {
        return self->delegate(b, release_atom::value, round, keep);
      },
      [=](cancel_atom, const builder_actor& b, uint64_t round) { self->send(b, cancel_atom::value, round); },
      // The pool's requests to its worker: the fake pool makes none.
      [](hello_atom) -> caf::result<int32_t> { return caf::make_error(caf::sec::unexpected_message); },
      [](spawn_atom) -> caf::result<builder_actor> { return caf::make_error(caf::sec::unexpected_message); },
      [](spawn_atom, const std::string&, const build_options&) -> caf::result<one_substituter_actor> {
        return caf::make_error(caf::sec::unexpected_message);
      },
      [](cancel_atom, const one_substituter_actor&) {},
      [=](subst_atom, const one_substituter_actor& s, const std::string& path, uint32_t index, bool repair,
          caf::timespan) { return self->delegate(s, subst_atom::value, path, index, repair); },
      [=](probe_atom, const one_substituter_actor& s, const std::string& path, uint32_t index, caf::timespan) {
        return self->delegate(s, probe_atom::value, path, index);
      },
  };
}

struct fake_builder_state {
  caf::typed_response_promise<build_report> held;
  bool dying = false;
  static inline const char* name = "fake_builder";
};

builder_actor::behavior_type fake_builder(builder_actor::stateful_pointer<fake_builder_state> self, builder_plan plan,
                                          std::shared_ptr<plan_state> ps) {
  return {
      [=](run_atom, uint64_t, const build_request&) -> caf::result<build_report> {
        if (plan == builder_plan::die) {
          // As a lost worker's proxy: the request is never answered, the
          // builder goes down.
          auto unanswered = self->make_response_promise<build_report>();
          self->quit(caf::exit_reason::remote_link_unreachable);
          return unanswered;
        }
        if (plan == builder_plan::hold) {
          self->state.held = self->make_response_promise<build_report>();
          return self->state.held;
        }
        if (plan == builder_plan::refuse)
          return caf::make_error(engine_errc::builder_failure, std::string("busy with another round"));
        build_report r;
        if (plan == builder_plan::fail)
          r.outcome.wait_status = 256;
        if (plan == builder_plan::report_then_die) {
          self->send(self, cancel_atom::value, uint64_t(0)); // goes down once the report is out
          self->state.dying = true;
        }
        return r;
      },
      [=](release_atom, uint64_t, bool) {
        self->quit();
        return std::string();
      },
      [=](cancel_atom, uint64_t) {
        if (self->state.dying)
          return self->quit(caf::exit_reason::remote_link_unreachable);
        ++ps->cancels;
        if (self->state.held.pending()) {
          build_report r;
          r.outcome.limit = builder_outcome::cancelled;
          self->state.held.deliver(r);
        }
      },
  };
}

one_substituter_actor::behavior_type fake_substituter(one_substituter_actor::pointer self, substituter_plan plan) {
  return {
      [=](subst_atom, const std::string& path, uint32_t, bool) -> caf::result<substitute_outcome> {
        if (plan == substituter_plan::die) {
          self->quit(caf::exit_reason::kill);
          return caf::make_error(caf::sec::request_receiver_down); // never arrives: the pool sees it down first
        }
        return substitute_outcome::copied_from("fake://cache", {path});
      },
      [=](probe_atom, const std::string&, uint32_t) {
        return substitute_outcome(substitute_outcome::available, "");
      },
  };
}

worker_pool_actor::behavior_type fake_pool(worker_pool_actor::pointer self, std::shared_ptr<plan_state> ps) {
  auto front = self->spawn(fake_front, ps);
  return {
      [=](lease_atom, const std::string&, const logger_actor&)
          -> caf::result<builder_actor, worker_front_actor, uint64_t> {
        uint64_t lease = ++ps->leases;
        if (ps->ignored_leases > 0) {
          --ps->ignored_leases;
          return self->make_response_promise<builder_actor, worker_front_actor, uint64_t>(); // never delivered
        }
        builder_plan p = builder_plan::report;
        if (!ps->plan.empty()) {
          p = ps->plan.front();
          ps->plan.pop_front();
        }
        return {caf::actor_cast<builder_actor>(self->spawn(fake_builder, p, ps)), front, lease};
      },
      [=](lease_atom, const std::string&, const build_options&)
          -> caf::result<one_substituter_actor, worker_front_actor> {
        ++ps->substituter_leases;
        auto plan = substituter_plan::answer;
        if (!ps->substituters.empty()) {
          plan = ps->substituters.front();
          ps->substituters.pop_front();
        }
        return {self->spawn(fake_substituter, plan), front};
      },
      [=](release_atom, uint64_t lease, bool reusable) { ps->given_back.emplace_back(lease, reusable); },
      [=](cancel_atom, const one_substituter_actor&) { ++ps->substituters_cancelled; },
      [=](restart_atom, uint32_t) {},
      [=](reaped_atom, int32_t, int32_t) {},
      [=](stop_atom) { return uint32_t{0}; },
      [=](deadline_atom) {},
  };
}

struct fixture : test_coordinator_fixture<engine_test_config> {
  std::shared_ptr<world> w = std::make_shared<world>();
  std::shared_ptr<plan_state> ps = std::make_shared<plan_state>();
  std::shared_ptr<caches_state> cs = std::make_shared<caches_state>();
  std::string store_dir;
  std::vector<engine_event> events;
  build_options options;

  fixture() {
    char tmpl[] = "/tmp/kiln-goal-actors-XXXXXX";
    store_dir = ::mkdtemp(tmpl);
  }
  ~fixture() override { std::system(("rm -rf '" + store_dir + "'").c_str()); }

  // A derivation named `name` whose outputs are tagged `tag`, on `inputs`.
  std::string add(const std::string& name, char tag, std::vector<std::string> inputs = {},
                  std::vector<std::string> outputs = {"out"}) {
    derivation d;
    d.platform = "x86_64-linux";
    d.builder = "/bin/sh";
    for (auto& o : outputs)
      d.outputs[o].path = store_path_for(name + (o == "out" ? "" : "-" + o), tag);
    for (auto& i : inputs)
      d.input_drvs[i] = {"out"};
    std::string drv = store_path_for(name + ".drv", tag);
    w->drvs[drv] = d;
    return drv;
  }

  scheduler_actor scheduler() {
    return spawn_scheduler(sys, sys.spawn(fake_store, w), sys.spawn(no_substituters), sys.spawn(quiet_logger, ps),
                           nullptr, sys.spawn(fake_pool, ps), options,
                           [this](const engine_event& e) { events.push_back(e); }, store_dir);
  }

  // Every goal's result once the run is answered.
  std::vector<build_result> realise(scheduler_actor s, std::vector<std::string> drvs) {
    std::vector<goal_request> requests;
    for (auto& d : drvs)
      requests.push_back({d, {}});
    return realise(s, requests);
  }

  std::vector<build_result> realise(scheduler_actor s, std::vector<goal_request> requests) {
    auto answer = self->request(s, answer_timeout, want_atom::value, requests);
    run_until([&] { return !self->mailbox().empty(); });
    std::vector<build_result> results;
    answer.receive([&](std::vector<build_result>& r) { results = std::move(r); },
                   [&](caf::error& e) { CAF_FAIL("the run failed: " << sys.render(e)); });
    return results;
  }

  // The substitution pool of a run in kilnd, leasing its substituters on
  // the fake worker pool: what it answers for one copy.
  caf::expected<substitute_outcome> substitute_through_workers(const std::string& path) {
    local_store store(store_layout{store_dir});
    auto pool = spawn_substituter_pool(sys, store, options, sys.spawn(fake_pool, ps));
    auto answer = self->request(pool, answer_timeout, subst_atom::value, path, uint32_t(0), false);
    run_until([&] { return !self->mailbox().empty(); });
    caf::expected<substitute_outcome> got{caf::sec::none};
    answer.receive([&](substitute_outcome& o) { got = std::move(o); }, [&](caf::error& e) { got = std::move(e); });
    self->send_exit(pool, caf::exit_reason::user_shutdown);
    run();
    return got;
  }

  // What a substitute_any answers over caches that do as `plans` say:
  // before its priority grace is over, or (`after_grace`) only after.
  substitute_outcome substitute_any_of(std::vector<cache_plan> plans, bool after_grace = false) {
    cs->plans = std::move(plans);
    auto any = spawn_substitute_any(self.ptr(), sys.spawn(fake_caches, cs), static_cast<uint32_t>(cs->plans.size()));
    auto answer = self->request(any, answer_timeout, subst_any_atom::value, store_path_for("wanted", 'w'), false);
    consume_messages(); // no timer fires
    CAF_CHECK_EQUAL(self->mailbox().empty(), after_grace);
    if (after_grace) {
      trigger_timeout(); // the earliest: the grace
      run_until([&] { return !self->mailbox().empty(); });
    }
    substitute_outcome got;
    answer.receive([&](substitute_outcome& o) { got = std::move(o); },
                   [&](caf::error& e) { CAF_FAIL("substitute_any failed: " << sys.render(e)); });
    return got;
  }

  const build_result& of(const std::vector<build_result>& results, const std::string& drv) {
    for (auto& r : results)
      if (r.path == drv)
        return r;
    CAF_FAIL("no result for " << drv);
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(goal_actors_tests, fixture)

CAF_TEST(a_derivation_wanted_twice_is_built_once) {
  auto lib = add("lib", '1');
  auto app = add("app", '2', {lib});
  auto tool = add("tool", '3', {lib});
  auto results = realise(scheduler(), {app, tool, lib});
  CAF_CHECK_EQUAL(w->registered[lib], 1);
  CAF_CHECK_EQUAL(w->registered[app], 1);
  CAF_CHECK_EQUAL(w->registered[tool], 1);
  CAF_CHECK(of(results, app).status == build_status::built);
  CAF_CHECK_EQUAL(ps->leases, 3);
}

CAF_TEST(outputs_wanted_by_two_requests_are_merged_into_one_goal) {
  auto multi = add("multi", '4', {}, {"out", "dev"});
  auto results = realise(scheduler(), std::vector<goal_request>{{multi, {"out"}}, {multi, {"dev"}}});
  CAF_CHECK_EQUAL(w->registered[multi], 1);
  CAF_CHECK_EQUAL(ps->leases, 1);
  auto& r = of(results, multi);
  CAF_CHECK(r.status == build_status::built);
  CAF_CHECK_EQUAL(r.outputs.size(), 2u);
}

CAF_TEST(a_build_that_fails_by_itself_is_not_retried) {
  auto lib = add("lib", '1');
  ps->plan = {builder_plan::fail};
  auto results = realise(scheduler(), {lib});
  CAF_CHECK(of(results, lib).status == build_status::permanent_failure);
  CAF_CHECK_EQUAL(ps->leases, 1);
}

CAF_TEST(a_round_s_log_is_closed_behind_its_worker_s_front_once_the_builder_reported) {
  auto lib = add("lib", '1');
  auto results = realise(scheduler(), {lib});
  CAF_CHECK(of(results, lib).status == build_status::built);
  // The lines the builder sent pass through the front: the close follows them.
  CAF_CHECK_EQUAL(ps->log_events, (std::vector<std::string>{"flushed", "closed " + lib}));
}

CAF_TEST(a_builder_is_given_back_after_its_round_and_a_lost_one_is_not) {
  auto lib = add("lib", '1');
  ps->plan = {builder_plan::die, builder_plan::report};
  auto results = realise(scheduler(), {lib});
  CAF_CHECK(of(results, lib).status == build_status::built);
  CAF_CHECK_EQUAL(ps->leases, 2);
  // The first lease's builder went down (the pool sees that itself); the
  // second's serves another round.
  CAF_CHECK_EQUAL(ps->given_back, (std::vector<std::pair<uint64_t, bool>>{{2, true}}));
}

CAF_TEST(a_builder_leased_while_the_round_is_described_goes_back_unused_when_there_is_nothing_to_build) {
  auto lib = add("lib", '1');
  w->built_meanwhile.insert(store_path_for("lib", '1')); // by whoever held the output locks
  auto results = realise(scheduler(), {lib});
  CAF_CHECK(of(results, lib).status == build_status::already_valid);
  CAF_CHECK_EQUAL(ps->leases, 1); // asked for alongside the description
  CAF_CHECK_EQUAL(ps->given_back, (std::vector<std::pair<uint64_t, bool>>{{1, true}}));
  CAF_CHECK_EQUAL(w->registered[lib], 0);
}

CAF_TEST(a_builder_that_answered_its_round_with_an_error_serves_no_other) {
  auto lib = add("lib", '1');
  ps->plan = {builder_plan::refuse};
  auto results = realise(scheduler(), {lib});
  CAF_CHECK(of(results, lib).status == build_status::misc_failure);
  CAF_CHECK_EQUAL(ps->given_back, (std::vector<std::pair<uint64_t, bool>>{{1, false}}));
}

CAF_TEST(a_worker_lost_after_its_round_reported_costs_no_retry) {
  auto lib = add("lib", '1');
  ps->plan = {builder_plan::report_then_die};
  auto results = realise(scheduler(), {lib});
  CAF_CHECK(of(results, lib).status == build_status::built);
  CAF_CHECK_EQUAL(ps->leases, 1);
  CAF_CHECK_EQUAL(w->registered[lib], 1);
}

CAF_TEST(outputs_already_valid_are_not_built) {
  auto lib = add("lib", '1');
  w->valid.insert(store_path_for("lib", '1'));
  auto results = realise(scheduler(), {lib});
  CAF_CHECK(of(results, lib).status == build_status::already_valid);
  CAF_CHECK_EQUAL(ps->leases, 0);
  CAF_CHECK_EQUAL(w->described, 0);
}

CAF_TEST(a_round_whose_worker_is_lost_is_built_again_elsewhere) {
  auto lib = add("lib", '1');
  ps->plan = {builder_plan::die};
  auto results = realise(scheduler(), {lib});
  CAF_CHECK(of(results, lib).status == build_status::built);
  CAF_CHECK_EQUAL(ps->leases, 2);
  CAF_CHECK_EQUAL(w->registered[lib], 1);
  bool told = false;
  for (auto& e : events)
    told = told || e.text.find("its worker was lost") != std::string::npos;
  CAF_CHECK(told);
}

CAF_TEST(a_round_lost_more_often_than_max_build_retries_fails_and_its_dependents_with_it) {
  options.max_build_retries = 2;
  auto lib = add("lib", '1');
  auto app = add("app", '2', {lib});
  ps->plan = {builder_plan::die, builder_plan::die, builder_plan::die};
  auto results = realise(scheduler(), {app});
  auto& r = of(results, lib);
  CAF_CHECK(r.status == build_status::misc_failure);
  CAF_CHECK(r.error.find("its worker was lost") != std::string::npos);
  CAF_CHECK(r.error.find("2 times; not tried again") != std::string::npos);
  CAF_CHECK(of(results, app).status == build_status::dependency_failed);
  CAF_CHECK_EQUAL(ps->leases, 3);
  CAF_CHECK_EQUAL(w->registered.count(lib), 0u);
}

CAF_TEST(a_lease_nobody_answers_times_out_and_is_asked_again) {
  auto lib = add("lib", '1');
  ps->ignored_leases = 1;
  auto s = scheduler();
  std::vector<goal_request> requests{{lib, {}}};
  auto answer = self->request(s, answer_timeout, want_atom::value, requests);
  consume_messages();
  CAF_CHECK_EQUAL(ps->leases, 1);
  CAF_CHECK(self->mailbox().empty());
  trigger_timeout(); // the earliest: the lease's 2 minutes
  run_until([&] { return !self->mailbox().empty(); });
  answer.receive([&](std::vector<build_result>& r) { CAF_CHECK(of(r, lib).status == build_status::built); },
                 [&](caf::error& e) { CAF_FAIL(sys.render(e)); });
  CAF_CHECK_EQUAL(ps->leases, 2);
}

CAF_TEST(a_cancel_reaches_the_running_builder_and_ends_the_run) {
  auto lib = add("lib", '1');
  ps->plan = {builder_plan::hold};
  auto s = scheduler();
  std::vector<goal_request> requests{{lib, {}}};
  auto answer = self->request(s, answer_timeout, want_atom::value, requests);
  consume_messages();
  CAF_CHECK_EQUAL(ps->leases, 1);
  self->send(s, cancel_atom::value);
  run_until([&] { return !self->mailbox().empty(); });
  answer.receive([&](std::vector<build_result>& r) { CAF_CHECK(of(r, lib).cancelled); },
                 [&](caf::error& e) { CAF_FAIL(sys.render(e)); });
  CAF_CHECK_EQUAL(ps->cancels, 1);
  CAF_CHECK_EQUAL(w->registered.count(lib), 0u);
}

CAF_TEST(a_lease_comes_back_when_its_holder_is_gone) {
  auto pool = spawn_slot_pool(sys, 1);
  auto got = std::make_shared<uint64_t>(0);
  auto holder = sys.spawn([pool, got](caf::event_based_actor* a) -> caf::behavior {
    a->request(pool, answer_timeout, slot_atom::value).then([got](uint64_t lease) { *got = lease + 1; });
    return {[](int) {}};
  });
  consume_messages();
  CAF_CHECK(*got != 0); // the holder has the one slot
  auto waiter = self->request(pool, answer_timeout, slot_atom::value);
  consume_messages();
  CAF_CHECK(self->mailbox().empty()); // none left
  caf::anon_send_exit(holder, caf::exit_reason::kill);
  run_until([&] { return !self->mailbox().empty(); });
  waiter.receive([&](uint64_t lease) { CAF_CHECK(lease + 1 != *got); },
                 [&](caf::error& e) { CAF_FAIL(sys.render(e)); });
}

CAF_TEST(a_copy_whose_worker_is_lost_is_asked_of_another_worker) {
  ps->substituters = {substituter_plan::die};
  auto path = store_path_for("fetched", 'a');
  auto got = substitute_through_workers(path);
  CAF_REQUIRE(got);
  CAF_CHECK(got->kind == substitute_outcome::substituted);
  CAF_CHECK_EQUAL(got->copied, std::vector<std::string>{path});
  CAF_CHECK_EQUAL(ps->substituter_leases, 2);
  // The run's pool ended: each substituter it leased is cancelled on its
  // worker (one stuck in a silent cache stops at once); the lost one's
  // cancel finds nothing there.
  CAF_CHECK_EQUAL(ps->substituters_cancelled, 2);
}

CAF_TEST(a_copy_lost_more_often_than_max_build_retries_fails_as_a_lost_worker) {
  options.max_build_retries = 1;
  ps->substituters = {substituter_plan::die, substituter_plan::die, substituter_plan::answer};
  auto got = substitute_through_workers(store_path_for("fetched", 'b'));
  CAF_REQUIRE(!got);
  CAF_CHECK(got.error() == engine_errc::worker_lost);
  CAF_CHECK(error_text(got.error()).find("2 times; not tried again") != std::string::npos);
  CAF_CHECK_EQUAL(ps->substituter_leases, 2);
}

CAF_TEST(the_first_in_priority_order_that_has_the_path_gives_it) {
  auto got = substitute_any_of({cache_plan::absent, cache_plan::has, cache_plan::has});
  CAF_CHECK(got.kind == substitute_outcome::substituted);
  CAF_CHECK_EQUAL(got.from, "cache1");
  CAF_CHECK_EQUAL(cs->copies, std::vector<uint32_t>{1});
  CAF_CHECK(got.notices.empty());
}

CAF_TEST(a_silent_cache_holds_up_one_that_has_the_path_only_until_the_grace_is_over) {
  auto got = substitute_any_of({cache_plan::silent, cache_plan::has}, true);
  CAF_CHECK(got.kind == substitute_outcome::substituted);
  CAF_CHECK_EQUAL(got.from, "cache1");
}

CAF_TEST(a_passed_over_cache_s_warning_is_told_and_a_later_one_s_is_not) {
  auto got = substitute_any_of({cache_plan::untrusted, cache_plan::has});
  CAF_CHECK_EQUAL(got.from, "cache1");
  CAF_CHECK_EQUAL(got.notices, std::vector<std::string>{"warning: cache 0 is not trusted"});
  got = substitute_any_of({cache_plan::has, cache_plan::untrusted});
  CAF_CHECK_EQUAL(got.from, "cache0");
  CAF_CHECK(got.notices.empty());
}

CAF_TEST(a_copy_that_fails_moves_on_to_the_next_cache_and_counts_as_failed_if_none_gives_it) {
  auto got = substitute_any_of({cache_plan::broken, cache_plan::has});
  CAF_CHECK(got.kind == substitute_outcome::substituted);
  CAF_CHECK_EQUAL(got.notices, std::vector<std::string>{"error: cache 0 sent garbage"});
  cs->copies.clear();
  got = substitute_any_of({cache_plan::broken, cache_plan::absent});
  CAF_CHECK(got.kind == substitute_outcome::failed);
  CAF_CHECK_EQUAL(cs->copies, std::vector<uint32_t>{0});
}

CAF_TEST(a_lone_substituter_is_copied_from_without_a_probe) {
  auto got = substitute_any_of({cache_plan::has});
  CAF_CHECK(got.kind == substitute_outcome::substituted);
  CAF_CHECK_EQUAL(cs->copies, std::vector<uint32_t>{0});
  CAF_CHECK_EQUAL(cs->probes, 0);
}

CAF_TEST(none_having_the_path_is_absent_with_every_reason) {
  auto got = substitute_any_of({cache_plan::absent, cache_plan::absent});
  CAF_CHECK(got.kind == substitute_outcome::absent);
  CAF_CHECK_EQUAL(got.message, "\n  cache 0 has not got it\n  cache 1 has not got it");
  CAF_CHECK(cs->copies.empty());
}

CAF_TEST_FIXTURE_SCOPE_END()
