/* CPython's _PyInterpreterFrame: what a walk up the running thread's frames
 * reads (its code, its instruction, the frame before it, its owner), version
 * by version, as the internal header pycore_frame.h of 3.11, 3.12 and 3.13
 * lays it out, and the test PyFrame_GetBack applies to skip a frame that is
 * not complete yet (_PyFrame_IsIncomplete).
 *
 * Why: the public walk (PyEval_GetFrame, PyFrame_GetBack) makes a frame object
 * for every frame it passes, and a frame object outliving its frame copies the
 * frame when it returns: a future made in a library's coroutine paid for two
 * or three of them. This walk reads the frames in place and makes none.
 *
 * _cfuture.c checks it at import against the public walk (the same code and
 * instruction offset, frame by frame, from the importing frame up) and uses it
 * only if they agree; on any other version, or if they disagree, the public
 * walk runs (see frames_fast). */
#ifndef TF_FRAME_LAYOUT_H
#define TF_FRAME_LAYOUT_H

#define TF_OWNED_BY_GENERATOR 1
#define TF_OWNED_BY_CSTACK 3 /* 3.12+ */

#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000
#define TF_HAVE_IFRAME 1
typedef struct TFIFrame {
    PyObject *f_func;
    PyObject *f_globals;
    PyObject *f_builtins;
    PyObject *f_locals;
    PyCodeObject *f_code;
    PyObject *frame_obj;
    struct TFIFrame *previous;
    uint16_t *prev_instr; /* _Py_CODEUNIT *: two bytes a unit */
    int stacktop;
    unsigned char is_entry; /* bool */
    char owner;
} TFIFrame;

#elif PY_VERSION_HEX >= 0x030C0000 && PY_VERSION_HEX < 0x030E0000
#define TF_HAVE_IFRAME 1
typedef struct TFIFrame {
    PyObject *f_executable; /* 3.12's f_code; 3.13: a code object, or None (a frame the C stack owns) */
    struct TFIFrame *previous;
    PyObject *f_funcobj;
    PyObject *f_globals;
    PyObject *f_builtins;
    PyObject *f_locals;
    PyObject *frame_obj;
    uint16_t *instr; /* _Py_CODEUNIT *: 3.12's prev_instr, 3.13's instr_ptr (internal from 3.13) */
    int stacktop;
    uint16_t return_offset;
    char owner;
} TFIFrame;

#else
#define TF_HAVE_IFRAME 0
#endif

#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000
#define TF_IFRAME_CODE(f) ((f)->f_code)
#define TF_IFRAME_INSTR(f) ((f)->prev_instr)
#else
#define TF_IFRAME_CODE(f) ((PyCodeObject *)(f)->f_executable)
#define TF_IFRAME_INSTR(f) ((f)->instr)
#endif
#if PY_VERSION_HEX >= 0x030D0000
#define TF_IFRAME_SHIM(f) ((f)->owner == TF_OWNED_BY_CSTACK)
#define TF_THREAD_IFRAME(ts) ((TFIFrame *)(ts)->current_frame)
#else
#define TF_IFRAME_SHIM(f) 0
#define TF_THREAD_IFRAME(ts) ((TFIFrame *)(ts)->cframe->current_frame)
#endif

#if TF_HAVE_IFRAME
/* _PyFrame_IsIncomplete: before its first RESUME (or a C stack's shim, 3.13) */
static inline int
tf_iframe_incomplete(TFIFrame *f)
{
    if (TF_IFRAME_SHIM(f)) {
        return 1;
    }
    PyCodeObject *co = TF_IFRAME_CODE(f);
    return f->owner != TF_OWNED_BY_GENERATOR &&
           (char *)TF_IFRAME_INSTR(f) < co->co_code_adaptive + (size_t)co->_co_firsttraceable * sizeof(uint16_t);
}

/* f, or the first complete frame before it (_PyFrame_GetFirstComplete) */
static inline TFIFrame *
tf_iframe_complete(TFIFrame *f)
{
    while (f != NULL && tf_iframe_incomplete(f)) {
        f = f->previous;
    }
    return f;
}

/* PyFrame_GetLasti's: the instruction's offset in bytes, -1 before the first */
static inline int
tf_iframe_lasti(TFIFrame *f)
{
    Py_ssize_t lasti = (char *)TF_IFRAME_INSTR(f) - TF_IFRAME_CODE(f)->co_code_adaptive;
    return lasti < 0 ? -1 : (int)lasti;
}
#endif

#endif
