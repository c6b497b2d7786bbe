/* tracedfuture/_core/_gil.h: the GIL handed to tracing's own threads on request.
 *
 * A thread of tracing (the drain, an exporter's sink) does its heavy work with
 * the GIL released: copying records out of the ring, formatting trace lines,
 * folding events, writing the file. Taking the GIL back from a program that
 * runs Python code all the time costs a switch interval (5 ms) each time:
 * CPython's waiting thread asks the holder to drop it only after that long. A
 * drain that takes it back four times a batch then keeps up with a busy
 * program only by letting the ring grow, and the program's exit waits for the
 * rest (run -o on 100,000 futures: the drain ran 1 ms in every 50 while the
 * program did).
 *
 * So those threads take the GIL back with tf_gil_restore(), which says so
 * (tf_gil_asked), and the program's thread hands it over at its next *yield
 * point*: when it has just made a future or task on a traced loop (traced,
 * sampled out or refused by its ring), a moment at which a
 * C call holds no borrowed reference and leaves nothing half done, like any
 * Python code that gives the GIL away at a switch interval. It releases the
 * GIL, waits (spinning briefly, then yielding the CPU, 300 us at most) until
 * an asker has it, then waits awake (200 us at most) for the asker's turn to
 * end at its next tf_gil_release(), and takes the GIL back as CPython does.
 * The handover changes when threads run, never what a thread does.
 *
 * The cost on the program's thread is one relaxed load per such future while
 * nobody asks. A handover that timed out (the asker was not scheduled: a busy
 * machine) turns them off for 5 ms, so a starved drain cannot cost the program
 * a wait per future.
 */
#ifndef TRACEDFUTURE_GIL_H
#define TRACEDFUTURE_GIL_H

#include <Python.h>

extern int tf_gil_asked; /* threads in tf_gil_restore() now (atomic) */

/* PyEval_SaveThread(), counted: a program's thread that handed the GIL over
 * waits for this (a short while, awake) before it takes the GIL back. */
PyThreadState *tf_gil_release(void);

/* PyEval_RestoreThread(save), asking the program's thread to hand the GIL over. */
void tf_gil_restore(PyThreadState *save);

/* The program's thread: give the GIL to a thread that asks for it (see above). */
void tf_gil_hand_over(void);

/* A yield point of the program's thread: the GIL held, no borrowed reference
 * held across, nothing half done. */
static inline void
tf_gil_yield_point(void)
{
    if (__builtin_expect(__atomic_load_n(&tf_gil_asked, __ATOMIC_RELAXED) != 0, 0)) {
        tf_gil_hand_over();
    }
}

/* A tracing thread that has held the GIL for Python work (its reference's
 * calls, a run of them) for a turn (1 ms) since *since: 1, and *since is reset.
 * It then gives the GIL away for a moment (released, tf_gil_pause(), taken
 * back with tf_gil_restore()). Held longer, the program would wait a switch
 * interval for it, and CPython would take it from this thread at a random
 * point, leaving it to wait while the program's loop releases and retakes the
 * GIL at every select(): no waiter ever gets it then (a convoy: 40-160 ms
 * measured, the drain stalled while the ring grew). *since 0: starts now. */
int tf_gil_turn_due(long long *since);

/* With the GIL released: a moment (50 us at most) for a waiting thread to take it. */
void tf_gil_pause(void);

/* Whether the interpreter is finalizing: a daemon thread that takes the GIL
 * back then exits (3.13 made the function public). */
static inline int
tf_is_finalizing(void)
{
#if PY_VERSION_HEX >= 0x030D0000
    return Py_IsFinalizing();
#else
    return _Py_IsFinalizing();
#endif
}

/* Once, at import: Waker and write() added to the module (see _seam); a
 * fork()'s child starts with nobody asking. -1 with an exception set. */
int tf_gil_init(PyObject *module);

#endif
