// What the reference kernels' Python entry points share (kernels.cpp, conv.cpp, rowwise.cpp):
// buffers over the caller's memory, checks that raise ValueError, element type codes, and the
// entry points defined outside kernels.cpp.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <cstdint>

namespace bc {

// ---------------------------------------------------------------------------------------
// buffers

struct Buffer {
  Py_buffer view{};
  bool held = false;
  ~Buffer() {
    if (held) PyBuffer_Release(&view);
  }
  bool get(PyObject* obj, bool writable, const char* name, Py_ssize_t expected_bytes) {
    if (PyObject_GetBuffer(obj, &view, writable ? PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS : PyBUF_C_CONTIGUOUS) != 0) {
      return false;
    }
    held = true;
    if (expected_bytes >= 0 && view.len != expected_bytes) {
      PyErr_Format(PyExc_ValueError, "%s: buffer holds %zd bytes, expected %zd", name, view.len, expected_bytes);
      return false;
    }
    return true;
  }
  template <typename T>
  T* as() const {
    return static_cast<T*>(view.buf);
  }
};

inline bool check(bool ok, const char* message) {
  if (!ok) PyErr_SetString(PyExc_ValueError, message);
  return ok;
}

// element type codes shared with harness/reference/primitives.py
enum Dtype { U8 = 0, S8 = 1, S32 = 2 };

inline Py_ssize_t itemsize(int dtype) { return dtype == S32 ? 4 : 1; }

inline bool valid_dtype(int dtype) { return dtype == U8 || dtype == S8 || dtype == S32; }

inline void store(void* dst, int dtype, Py_ssize_t i, int64_t v) {
  if (dtype == U8) static_cast<uint8_t*>(dst)[i] = static_cast<uint8_t>(v);
  else if (dtype == S8) static_cast<int8_t*>(dst)[i] = static_cast<int8_t>(v);
  else static_cast<int32_t*>(dst)[i] = static_cast<int32_t>(v);
}

inline int64_t load(const void* src, int dtype, Py_ssize_t i) {
  if (dtype == U8) return static_cast<const uint8_t*>(src)[i];
  if (dtype == S8) return static_cast<const int8_t*>(src)[i];
  return static_cast<const int32_t*>(src)[i];
}

// entry points of conv.cpp and rowwise.cpp (their comments say what each computes)
PyObject* conv3d(PyObject*, PyObject* args);
PyObject* fp16_round(PyObject*, PyObject* args);
PyObject* embedding_bag_rowwise(PyObject*, PyObject* args);
PyObject* rowwise_quantize(PyObject*, PyObject* args);

}  // namespace bc
