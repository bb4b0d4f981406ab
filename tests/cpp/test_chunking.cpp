// The planner's chunk size (see [NOTE: chunk size from the bytes model] in csrc/chunking.cpp): the bytes
// model counts every element once, and the chosen chunking keeps the busiest CUDA block close to
// the physical lower bound (every byte of the set spread evenly over the resident blocks).
#include <cstdio>
#include <string>
#include <vector>

#include "chunking.h"
#include "table.h"

using namespace lookahead_fused;

namespace {

int failures = 0;

void expect(bool ok, const std::string& what) {
  if (!ok) {
    ++failures;
    std::printf("FAILED: %s\n", what.c_str());
  }
}

struct Set {
  std::vector<int64_t> words;
  int64_t bytes = 0;  // read and write of both tensors, every element
  void add(int64_t numel, int64_t code, int64_t fast_bytes, int64_t slow_bytes, int copies = 1) {
    for (int i = 0; i < copies; ++i) {
      words.insert(words.end(), {0, 0, numel, code});
      bytes += 2 * numel * (fast_bytes + slow_bytes);
    }
  }
  int64_t pairs() const { return int64_t(words.size()) / entry_words(2); }
};

constexpr int64_t kH100Lanes = 132 * 2;  // SMs x blocks per SM of the table kernel
constexpr EntryRoles kSyncRoles = roles_of(TableOp::kSync);

// With one lane, the busiest lane is the whole set plus the fixed cost of every chunk.
void test_one_lane_counts_every_byte() {
  Set set;
  set.add(100003, kF32F32, 4, 4);
  set.add(4096, kBF16F32, 2, 4);
  set.add(1, kF64F64, 8, 8);
  for (int64_t chunk = kChunkQuantum; chunk <= kMaxChunkElems; chunk += kChunkQuantum) {
    int64_t chunks = (100003 + chunk - 1) / chunk + (4096 + chunk - 1) / chunk + 1;
    expect(busiest_lane_bytes(set.words.data(), set.pairs(), kSyncRoles, 1, chunk) == set.bytes + chunks * kChunkCostBytes,
           "one lane, chunk " + std::to_string(chunk) + ": every byte and chunk counted once");
  }
}

// The chosen chunking's busiest lane within `slack` of the even spread (the physical bound).
void expect_near_even(const Set& set, int64_t lanes, double slack, const std::string& name) {
  int64_t chunk = choose_chunk_elements(set.words.data(), set.pairs(), kSyncRoles, lanes);
  expect(chunk >= kChunkQuantum && chunk <= kMaxChunkElems && chunk % kChunkQuantum == 0, name + ": chunk size");
  double busiest = double(busiest_lane_bytes(set.words.data(), set.pairs(), kSyncRoles, lanes, chunk));
  double even = double(set.bytes) / double(lanes);
  double fixed = double(busiest_lane_bytes(set.words.data(), set.pairs(), kSyncRoles, lanes, kMaxChunkElems));
  std::printf("%-30s busiest lane over the even spread: %.3f with chunks of %lld, %.3f with %lld\n", name.c_str(),
              busiest / even, (long long)chunk, fixed / even, (long long)kMaxChunkElems);
  expect(busiest <= slack * even, name + ": busiest lane within " + std::to_string(slack) + " x the even spread");
}

void test_sets() {
  Set ten_million;  // 153 chunks of 2^16: a lone wave that leaves 111 of 264 blocks idle
  ten_million.add(153 * 65536, kF32F32, 4, 4);
  expect(choose_chunk_elements(ten_million.words.data(), 1, kSyncRoles, kH100Lanes) < kMaxChunkElems,
         "10M fp32 on an H100: smaller chunks than the largest");
  expect_near_even(ten_million, kH100Lanes, 1.06, "10M fp32, H100");

  Set two_waves;  // 300 chunks of 2^16: two rounds where 1.14 would do
  two_waves.add(300 * 65536, kBF16F32, 2, 4);
  expect_near_even(two_waves, kH100Lanes, 1.06, "300 x 2^16 bf16+fp32, H100");

  Set gpt2;  // GPT-2-small-like: 12 layers of (768x2304, 768x768, 768x3072 x2) plus embeddings
  gpt2.add(50257 * 768, kF32F32, 4, 4);
  gpt2.add(768 * 2304, kF32F32, 4, 4, 12);
  gpt2.add(768 * 768, kF32F32, 4, 4, 12);
  gpt2.add(768 * 3072, kF32F32, 4, 4, 24);
  gpt2.add(768, kF32F32, 4, 4, 100);
  expect_near_even(gpt2, kH100Lanes, 1.10, "GPT-2-small-like fp32, H100");
  expect_near_even(gpt2, 108 * 2, 1.10, "GPT-2-small-like fp32, A100");

  Set large;  // 1.3B params: large chunks are already even, and cheaper per element
  large.add(2048 * 8192, kBF16F32, 2, 4, 4 * 24);
  large.add(2048 * 2048, kBF16F32, 2, 4, 4 * 24);
  expect(choose_chunk_elements(large.words.data(), large.pairs(), kSyncRoles, kH100Lanes) == kMaxChunkElems,
         "1.3B bf16+fp32 on an H100: the largest chunks");
  expect_near_even(large, kH100Lanes, 1.03, "1.3B bf16+fp32, H100");

  Set tiny;  // 2000 one-element pairs: one chunk each whatever the size, so the largest size
  tiny.add(1, kF32F32, 4, 4, 2000);
  expect(choose_chunk_elements(tiny.words.data(), tiny.pairs(), kSyncRoles, kH100Lanes) == kMaxChunkElems,
         "2000 one-element pairs: the largest chunk on a tie");
  expect(choose_chunk_elements(gpt2.words.data(), gpt2.pairs(), kSyncRoles, 0) == kMaxChunkElems, "no lanes (CPU): the largest");
}

// The bytes model counts each tensor of an entry in the dtype of its role, whatever the depth: a
// 4-deep entry with three bfloat16 tensors (a param, its grad, a momentum) and a float32 slow weight
// moves 3 x 2 + 4 bytes per element, not 2 + 3 x 4.
// see [NOTE: entry dtypes] in csrc/table.h
void test_element_bytes_follow_the_roles() {
  expect(entry_element_bytes(kBF16F32, EntryRoles{4, 3}) == 3 * 2 + 4, "4 deep, 3 bfloat16 and 1 float32");
  expect(entry_element_bytes(kBF16F32, roles_of(TableOp::kSync)) == 2 + 4, "the sync: bfloat16 fast, float32 slow");
  expect(entry_element_bytes(kBF16F32, roles_of(TableOp::kAdamWMomentum)) == 4 * 2 + 2 * 4,
         "AdamW with outer momentum: four bfloat16, slow and momentum float32");
  expect(entry_element_bytes(kF16F16, roles_of(TableOp::kMomentumSync)) == 3 * 2, "the momentum sync, float16");
  expect(entry_element_bytes(kCompactF32, roles_of(TableOp::kCompactSync)) == 4 + 3,
         "the compact sync: float32 fast, bf16+int8 slow");
  expect(entry_element_bytes(kCompactBF16, roles_of(TableOp::kCompactSync)) == 2 + 3,
         "the compact sync: bfloat16 fast, bf16+int8 slow");
  expect(entry_element_bytes(kF32F32, roles_of(TableOp::kCompactSync)) == 0, "a pair code is no compact code");
}

}  // namespace

int main() {
  test_element_bytes_follow_the_roles();
  test_one_lane_counts_every_byte();
  test_sets();
  if (failures) {
    std::printf("%d failures\n", failures);
    return 1;
  }
  std::printf("chunking: every case passed\n");
  return 0;
}
