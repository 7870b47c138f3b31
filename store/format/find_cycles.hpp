// Cycles in a directed graph, found by a depth-first walk without recursion
// (reference graphs can be deep). Used for the outputs of one build (Nix
// refuses a build whose outputs refer to each other in a cycle) and for the
// whole store's reference graph (`kiln store verify`).
#pragma once

#include <set>
#include <vector>

namespace kiln {

// Walks from each of `starts` in order, visiting each node's children in the
// order `children(node)` gives them (self-references are not cycles). Each
// cycle met is returned as the nodes along it, the node met again first and
// last: {a, b, a} means a refers to b and b back to a. A cycle is reported
// once, when the walk first closes it; with `first_only` the walk stops there.
template <class T, class Children>
std::vector<std::vector<T>> find_cycles(const std::vector<T>& starts, Children children, bool first_only = false) {
  struct frame {
    T node;
    std::vector<T> kids;
    std::size_t next = 0;
  };
  std::vector<std::vector<T>> cycles;
  std::set<T> done;
  for (auto& s : starts) {
    if (done.count(s))
      continue;
    std::vector<frame> stack;
    std::set<T> on_stack{s};
    stack.push_back({s, children(s)});
    while (!stack.empty()) {
      frame& f = stack.back();
      if (f.next == f.kids.size()) {
        done.insert(f.node);
        on_stack.erase(f.node);
        stack.pop_back();
        continue;
      }
      T kid = f.kids[f.next++];
      if (kid == f.node || done.count(kid))
        continue;
      if (on_stack.count(kid)) {
        std::vector<T> cycle;
        std::size_t i = stack.size();
        while (!(stack[i - 1].node == kid))
          --i;
        for (--i; i < stack.size(); ++i)
          cycle.push_back(stack[i].node);
        cycle.push_back(kid);
        cycles.push_back(std::move(cycle));
        if (first_only)
          return cycles;
        continue;
      }
      on_stack.insert(kid);
      stack.push_back({kid, children(kid)}); // f is not used past this point
    }
  }
  return cycles;
}

} // namespace kiln
