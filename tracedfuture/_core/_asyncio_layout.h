/* The layouts of _asyncio's FutureObj and TaskObj (CPython's private structs in
 * Modules/_asynciomodule.c), for TracedTask's own step (_cfuture.c, "The step").
 *
 * Written from the struct definitions of 3.11, 3.12 and 3.13 (the same ones that
 * out-of-process profilers read). They are never trusted blindly: at import,
 * _cfuture.c's verify_layout() checks the sizes against the live types and probes
 * every field it uses on a Future and a Task made on a stand-in loop; if anything
 * differs (a patch release that moved a field), TracedTask keeps asyncio's own
 * step and tracedfuture._core.STEP_REASON says why.
 *
 * 3.11 and 3.12: ints, then dict and weakreflist pointers, then cancelled_exc.
 * 3.13: cancelled_exc moves up, log_tb and blocking become bits that share one
 * unsigned with Task's must_cancel and log_destroy_pending (the comment in 3.13's
 * source asks for them to stay contiguous), and the dict and weakref list are
 * managed by the interpreter, outside the struct.
 */
#ifndef TF_ASYNCIO_LAYOUT_H
#define TF_ASYNCIO_LAYOUT_H

typedef enum { TF_PENDING, TF_CANCELLED, TF_FINISHED } tf_fut_state;

#if PY_VERSION_HEX >= 0x030D0000 && PY_VERSION_HEX < 0x030E0000
#define TF_HAVE_LAYOUT 1
#define TF_FUT_HEAD                \
    PyObject_HEAD                  \
    PyObject *fut_loop;            \
    PyObject *fut_callback0;       \
    PyObject *fut_context0;        \
    PyObject *fut_callbacks;       \
    PyObject *fut_exception;       \
    PyObject *fut_exception_tb;    \
    PyObject *fut_result;          \
    PyObject *fut_source_tb;       \
    PyObject *fut_cancel_msg;      \
    PyObject *fut_cancelled_exc;   \
    tf_fut_state fut_state;        \
    unsigned fut_log_tb : 1;       \
    unsigned fut_blocking : 1;
typedef struct {
    TF_FUT_HEAD
} TFFut;
typedef struct {
    TF_FUT_HEAD
    unsigned task_must_cancel : 1;
    unsigned task_log_destroy_pending : 1;
    int task_num_cancels_requested;
    PyObject *task_fut_waiter;
    PyObject *task_coro;
    PyObject *task_name;
    PyObject *task_context;
} TFTask;

#else
/* 3.11 and 3.12; on any other version only declared, never used (verify_layout() refuses) */
#define TF_HAVE_LAYOUT (PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030D0000)
#define TF_FUT_HEAD                \
    PyObject_HEAD                  \
    PyObject *fut_loop;            \
    PyObject *fut_callback0;       \
    PyObject *fut_context0;        \
    PyObject *fut_callbacks;       \
    PyObject *fut_exception;       \
    PyObject *fut_exception_tb;    \
    PyObject *fut_result;          \
    PyObject *fut_source_tb;       \
    PyObject *fut_cancel_msg;      \
    tf_fut_state fut_state;        \
    int fut_log_tb;                \
    int fut_blocking;              \
    PyObject *fut_dict;            \
    PyObject *fut_weakreflist;     \
    PyObject *fut_cancelled_exc;
typedef struct {
    TF_FUT_HEAD
} TFFut;
typedef struct {
    TF_FUT_HEAD
    PyObject *task_fut_waiter;
    PyObject *task_coro;
    PyObject *task_name;
    PyObject *task_context;
    int task_must_cancel;
    int task_log_destroy_pending;
    int task_num_cancels_requested;
} TFTask;

#endif

#endif
