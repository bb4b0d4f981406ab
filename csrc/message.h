// The extension's error messages and checks, without a std::ostream.
//
// [NOTE: messages without iostreams] Every check in csrc/ is a LOOKAHEAD_CHECK* with `message(pieces...)`:
// one std::string, joined from string pieces and numbers written by std::to_string, thrown as the
// c10 error's whole message. TORCH_CHECK(cond, pieces...) would write them to a std::ostringstream
// compiled into this library (c10::str does so even for one std::string), and built with a toolchain
// that links part of libstdc++ statically into it (the lent H200 machine's /opt/gcc g++ 13.3,
// 2026-12-04), a stream's first number crashed the process (SIGSEGV in
// std::ostream::_M_insert<unsigned long>), at the first refusal that names a pair.
// tests/test_csrc_messages.py reads csrc/ for any check or stream that would bring one back. The
// headers of torch and pybind11 still format their own errors through streams, inlined here.
#pragma once

#include <cstdio>
#include <string>
#include <type_traits>

#include <c10/core/Device.h>
#include <c10/core/Layout.h>
#include <c10/core/ScalarType.h>
#include <c10/macros/Macros.h>
#include <c10/util/Exception.h>

namespace lookahead_fused {

inline std::string piece(const std::string& text) { return text; }
inline std::string piece(const char* text) { return text; }
inline std::string piece(bool value) { return value ? "true" : "false"; }
template <typename Integer, std::enable_if_t<std::is_integral_v<Integer>, int> = 0>
std::string piece(Integer value) {
  return std::to_string(value);
}
inline std::string piece(double value) {  // as a stream writes it by default: 6 significant digits
  char text[32];
  std::snprintf(text, sizeof(text), "%g", value);
  return text;
}
inline std::string piece(c10::ScalarType type) { return c10::toString(type); }
inline std::string piece(const c10::Device& device) { return device.str(); }
inline std::string piece(c10::Layout layout) {
  switch (layout) {
    case c10::kStrided: return "Strided";
    case c10::kSparse: return "Sparse";
    case c10::kSparseCsr: return "SparseCsr";
    case c10::kSparseCsc: return "SparseCsc";
    case c10::kSparseBsr: return "SparseBsr";
    case c10::kSparseBsc: return "SparseBsc";
    case c10::kMkldnn: return "Mkldnn";
    case c10::kJagged: return "Jagged";
    default: return "Layout " + std::to_string(static_cast<int>(layout));
  }
}

// The pieces joined: see [NOTE: messages without iostreams] in csrc/message.h.
template <typename... Pieces>
std::string message(const Pieces&... pieces) {
  std::string text;
  (text += ... += piece(pieces));
  return text;
}

}  // namespace lookahead_fused

// TORCH_CHECK, TORCH_CHECK_VALUE and TORCH_CHECK_NOT_IMPLEMENTED with `text` (a std::string, built only
// when `condition` fails) as the whole message: c10::str would put even one std::string through a
// stream (see [NOTE: messages without iostreams] in csrc/message.h).
#define LOOKAHEAD_CHECK_AS(error, condition, text)                   \
  do {                                                               \
    if (C10_UNLIKELY(!(condition))) C10_THROW_ERROR(error, (text)); \
  } while (false)
#define LOOKAHEAD_CHECK(condition, text) LOOKAHEAD_CHECK_AS(Error, condition, text)
#define LOOKAHEAD_CHECK_VALUE(condition, text) LOOKAHEAD_CHECK_AS(ValueError, condition, text)
#define LOOKAHEAD_CHECK_NOT_IMPLEMENTED(condition, text) LOOKAHEAD_CHECK_AS(NotImplementedError, condition, text)
