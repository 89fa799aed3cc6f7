// Result<T>: a value or an error message; how decoders and builders report problems without throwing.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace berth {

/// An error with a human message; `where` is "file:line:col" or a label name when known.
struct Error {
  std::string where;
  std::string message;

  std::string to_string() const { return where.empty() ? message : where + ": " + message; }
};

/// Either a T or an Error. Thread: any.
template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  Result(Error error) : v_(std::move(error)) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

}  // namespace berth
