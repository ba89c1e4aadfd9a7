// The one place C++ exceptions are classified for the Python binding (called inside a catch block).
#pragma once

#include <new>
#include <stdexcept>
#include <string>

#include "solver.hpp"

namespace fxbn {

enum class ErrorKind : int { infeasible = 1, invalid = 2, memory = 3, other = 4 };

// Rethrows the exception being handled and returns its kind, with its message in *message.
inline int classify_current_exception(std::string* message) {
  try {
    throw;
  } catch (const InfeasibleError& e) {
    *message = e.what();
    return static_cast<int>(ErrorKind::infeasible);
  } catch (const std::invalid_argument& e) {
    *message = e.what();
    return static_cast<int>(ErrorKind::invalid);
  } catch (const std::bad_alloc&) {
    *message = "out of memory";
    return static_cast<int>(ErrorKind::memory);
  } catch (const std::exception& e) {
    *message = e.what();
    return static_cast<int>(ErrorKind::other);
  } catch (...) {
    *message = "unknown C++ exception";
    return static_cast<int>(ErrorKind::other);
  }
}

}  // namespace fxbn
