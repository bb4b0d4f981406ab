// The CPU kernel through the C++ API alone (no Python): results against a float64 evaluation of the
// contract, the exact invariants, plan reuse, and a rejected call that writes nothing.
#include <ATen/ATen.h>

#include <cstdio>
#include <functional>
#include <string>

#include "contract.h"
#include "cpu/sync_cpu.h"
#include "plan.h"

using namespace lookahead_fused;

namespace {

int failures = 0, passes = 0;

void expect(bool ok, const std::string& what) {
  if (ok) {
    ++passes;
  } else {
    ++failures;
    std::printf("FAILED: %s\n", what.c_str());
  }
}

void sync(std::vector<at::Tensor>& fast, std::vector<at::Tensor>& slow, double alpha) {
  check_sync_pairs(fast, slow);
  auto plan = find_or_build_plan({fast, slow}, roles_of(TableOp::kSync),
                                 [&] { check_no_overlap("lookahead_sync_", {fast, slow}, list_names(TableOp::kSync)); });
  run_cpu(*plan, TableOp::kSync, UpdateArgs{alpha});
}

void test_against_float64(at::ScalarType fast_type, at::ScalarType slow_type, double alpha) {
  std::vector<at::Tensor> fast, slow, fast0, slow0;
  for (int64_t n : {1, 7, 4097, 70001}) {
    fast.push_back(at::randn({n}).to(fast_type));
    slow.push_back(at::randn({n}).to(slow_type));
    fast0.push_back(fast.back().clone());
    slow0.push_back(slow.back().clone());
  }
  sync(fast, slow, alpha);
  std::string name = std::string(c10::toString(fast_type)) + "/" + c10::toString(slow_type) + " alpha " +
                     std::to_string(alpha);
  for (size_t i = 0; i < fast.size(); ++i) {
    expect(at::equal(fast[i], slow[i].to(fast_type)), name + ": fast == slow after the sync");
    auto s = slow0[i].to(at::kDouble), f = fast0[i].to(at::kDouble);
    auto expected = alpha < 0.5 ? s + alpha * (f - s) : f - (f - s) * (1.0 - alpha);
    auto scale = at::maximum(s.abs(), f.abs());
    double eps = slow_type == at::kFloat ? 1.2e-7 : (slow_type == at::kBFloat16 ? 7.9e-3 : 9.8e-4);
    auto error = (slow[i].to(at::kDouble) - expected).abs() - 2 * eps * scale;
    expect(error.max().item<double>() <= 0, name + ": within 2 ulp of the float64 result");
    if (alpha == 0.0) expect(at::equal(slow[i], slow0[i]), name + ": alpha 0 keeps slow");
    if (alpha == 1.0) expect(at::equal(slow[i], fast0[i].to(slow_type)), name + ": alpha 1 takes fast");
  }
}

void test_plan_reuse() {
  clear_plan_cache();
  std::vector<at::Tensor> fast{at::randn({100}), at::randn({5000})}, slow{at::randn({100}), at::randn({5000})};
  for (int i = 0; i < 4; ++i) sync(fast, slow, 0.5);
  auto stats = plan_cache_stats();
  expect(stats.builds == 1 && stats.hits == 3, "one plan build, then cache hits");
}

void test_rejection_writes_nothing() {
  auto shared = at::randn({8});
  std::vector<at::Tensor> fast{at::randn({8}), shared}, slow{at::randn({8}), shared};
  auto before = fast[0].clone();
  bool raised = false;
  try {
    sync(fast, slow, 0.5);
  } catch (const c10::ValueError& e) {
    raised = std::string(e.what()).find("share memory") != std::string::npos;
  }
  expect(raised, "aliased pair rejected with a ValueError naming shared memory");
  expect(at::equal(fast[0], before), "nothing written by the rejected call");
}

}  // namespace

int main() {
  at::manual_seed(0);
  for (double alpha : {0.0, 0.3, 0.5, 0.7, 1.0}) {
    test_against_float64(at::kFloat, at::kFloat, alpha);
    test_against_float64(at::kBFloat16, at::kFloat, alpha);
    test_against_float64(at::kBFloat16, at::kBFloat16, alpha);
    test_against_float64(at::kHalf, at::kFloat, alpha);
  }
  test_plan_reuse();
  test_rejection_writes_nothing();
  std::printf("%d passed, %d failed\n", passes, failures);
  return failures == 0 ? 0 : 1;
}
