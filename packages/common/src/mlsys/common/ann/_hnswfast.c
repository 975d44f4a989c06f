/* _hnswfast: the unfiltered single-call search path of HNSWIndex, in one native call.
 *
 * HNSWIndex.search on ready queries costs the raw hnswlib ``knn_query`` plus a handful of checks
 * and conversions. In Python those pieces cost ~2 us at ef 16 (the walk evicts the caches, so each
 * bytecode runs cold); here they run as a few dozen machine instructions around the same
 * ``knn_query`` call, which keeps the wrapper within its overhead budget (issue 4: <= 5% per
 * single query). The Python fast path in _hnsw.py does the same work and is the fallback when
 * this extension was not built.
 *
 * search(native, queries, k, dim, n_live, l2, lock) -> (ids, scores) | None
 *
 *   native   the hnswlib.Index
 *   queries  anything; only an exact float32 native-order ndarray of shape (nq >= 1, dim) is served
 *   k        an exact int with 0 < k <= n_live
 *   l2       true: scores = -d (hnswlib reports squared L2); false: scores = 1 - d (hnswlib's ip)
 *   lock     the index's RWLock: its reader fast path (append to ``_active``, check ``_writer``;
 *            pop, wake a waiting writer) is taken around the call, exactly as RWLock does it
 *
 * Returns None, with nothing the caller can see changed, whenever the general path must answer:
 * queries or k not in the served form, a writer holding or waiting for the lock, knn_query raising
 * RuntimeError (fewer than k live items reachable) or a non-finite best score in some row (a
 * NaN/inf query: the general path validates and raises; the same test as the Python path). Any
 * other error propagates; the lock registration is undone on every exit.
 *
 * Not built for free-threaded CPython (setup.py): the lock protocol relies on the GIL.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include <math.h>

static PyObject *s_knn_query, *s_active, *s_writer, *s_wake_writer;
static PyArray_Descr *int64_descr;

/* The served shape: an exact, native-order float32 ndarray (nq >= 1, dim). Strided or unaligned
 * is fine: knn_query copies such an array itself. */
static int
served_queries(PyObject *queries, Py_ssize_t dim)
{
    if (!PyArray_CheckExact(queries)) {
        return 0;
    }
    PyArrayObject *q = (PyArrayObject *)queries;
    return PyArray_TYPE(q) == NPY_FLOAT32 && PyArray_ISNOTSWAPPED(q) && PyArray_NDIM(q) == 2 &&
           PyArray_DIM(q, 0) > 0 && PyArray_DIM(q, 1) == dim;
}

/* hnswlib's outputs -> mlsys's: scores in place, labels reinterpreted as int64 (ids are
 * non-negative int64, so the bits are the same). NULL with no error set: a row whose best score is
 * not finite. */
static PyObject *
convert(PyObject *result, Py_ssize_t nq, long k, int l2)
{
    if (!PyTuple_CheckExact(result) || PyTuple_GET_SIZE(result) != 2) {
        PyErr_SetString(PyExc_TypeError, "hnswlib knn_query returned something other than (labels, distances)");
        return NULL;
    }
    PyObject *labels = PyTuple_GET_ITEM(result, 0), *dist = PyTuple_GET_ITEM(result, 1);
    if (!PyArray_CheckExact(labels) || !PyArray_CheckExact(dist)) {
        PyErr_SetString(PyExc_TypeError, "hnswlib knn_query returned non-array outputs");
        return NULL;
    }
    PyArrayObject *la = (PyArrayObject *)labels, *da = (PyArrayObject *)dist;
    if (PyArray_TYPE(da) != NPY_FLOAT32 || !PyArray_IS_C_CONTIGUOUS(da) || !PyArray_ISWRITEABLE(da) ||
        !PyArray_ISNOTSWAPPED(da) || PyArray_NDIM(da) != 2 || PyArray_DIM(da, 0) != nq ||
        PyArray_DIM(da, 1) != k || !PyArray_ISUNSIGNED(la) || PyArray_ITEMSIZE(la) != 8 ||
        !PyArray_ISNOTSWAPPED(la) || !PyArray_IS_C_CONTIGUOUS(la) || PyArray_NDIM(la) != 2 ||
        PyArray_DIM(la, 0) != nq || PyArray_DIM(la, 1) != k) {
        PyErr_SetString(PyExc_TypeError, "hnswlib knn_query returned outputs of an unexpected layout");
        return NULL;
    }
    float *d = (float *)PyArray_DATA(da);
    const npy_intp n = (npy_intp)nq * k;
    if (l2) {
        for (npy_intp i = 0; i < n; i++) {
            d[i] = -d[i];
        }
    } else {
        for (npy_intp i = 0; i < n; i++) {
            d[i] = 1.0f - d[i];
        }
    }
    /* a NaN/inf query makes every score of its row non-finite; a finite query whose later
     * scores overflow is answered as is, as on the Python path */
    int finite = 1;
    for (npy_intp i = 0; i < n; i += k) {
        finite &= isfinite(d[i]) != 0;
    }
    if (!finite) {
        return NULL;
    }
    if (Py_REFCNT(result) == 1 && Py_REFCNT(labels) == 1) {
        /* Fresh outputs nobody else can see (hnswlib allocated them for this call):
         * retype the labels in place and hand back hnswlib's own tuple. The same as
         * ``labels.dtype = np.int64`` in Python (one descriptor swap, same itemsize and
         * alignment), minus numpy's setter machinery, whose cold code is most of what a view
         * costs after the graph walk evicted the caches. */
        PyArrayObject_fields *fields = (PyArrayObject_fields *)la;
        PyArray_Descr *old = fields->descr;
        Py_INCREF(int64_descr);
        fields->descr = int64_descr;
        Py_DECREF(old);
        return Py_NewRef(result);
    }
    Py_INCREF(int64_descr); /* PyArray_View steals it */
    PyObject *ids = PyArray_View(la, int64_descr, NULL);
    if (ids == NULL) {
        return NULL;
    }
    PyObject *out = PyTuple_Pack(2, ids, dist);
    Py_DECREF(ids);
    return out;
}

/* RWLock.release_read: pop the registration, wake a writer that raised its flag meanwhile. Runs
 * with any pending exception saved and restored, so a failing search still unregisters; if the
 * release itself fails, its error wins and carries the search's as __context__, as a Python
 * ``finally`` would. */
static int
release_read(PyObject *lock, PyObject *active)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    int rc = 0;
    Py_ssize_t n = PyList_GET_SIZE(active);
    if (n == 0) {
        PyErr_SetString(PyExc_RuntimeError, "RWLock reader registry is empty on release (lock imbalance)");
        rc = -1;
    } else if (PyList_SetSlice(active, n - 1, n, NULL) < 0) {
        rc = -1;
    }
    if (rc == 0) {
        PyObject *writer = PyObject_GetAttr(lock, s_writer);
        int busy = writer == NULL ? -1 : PyObject_IsTrue(writer);
        Py_XDECREF(writer);
        if (busy < 0) {
            rc = -1;
        } else if (busy) {
            PyObject *r = PyObject_CallMethodNoArgs(lock, s_wake_writer);
            if (r == NULL) {
                rc = -1;
            }
            Py_XDECREF(r);
        }
    }
    if (rc < 0 && type != NULL) {
        /* the release's error outranks the search's, which becomes its __context__ */
        PyErr_NormalizeException(&type, &value, &tb);
        if (tb != NULL) {
            PyException_SetTraceback(value, tb);
        }
        PyObject *ntype, *nvalue, *ntb;
        PyErr_Fetch(&ntype, &nvalue, &ntb);
        PyErr_NormalizeException(&ntype, &nvalue, &ntb);
        PyException_SetContext(nvalue, value); /* steals value */
        Py_DECREF(type);
        Py_XDECREF(tb);
        PyErr_Restore(ntype, nvalue, ntb);
    } else if (rc == 0) {
        PyErr_Restore(type, value, tb);
    }
    return rc;
}

static PyObject *
fast_search(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 7) {
        PyErr_Format(PyExc_TypeError, "search() takes 7 positional arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *native = args[0], *queries = args[1], *k_obj = args[2], *lock = args[6];
    Py_ssize_t dim = PyLong_AsSsize_t(args[3]);
    Py_ssize_t n_live = PyLong_AsSsize_t(args[4]);
    if ((dim == -1 || n_live == -1) && PyErr_Occurred()) {
        return NULL;
    }
    int l2 = PyObject_IsTrue(args[5]);
    if (l2 < 0) {
        return NULL;
    }
    if (!served_queries(queries, dim) || !PyLong_CheckExact(k_obj)) {
        Py_RETURN_NONE;
    }
    int overflow = 0;
    long k = PyLong_AsLongAndOverflow(k_obj, &overflow);
    if (overflow || k <= 0 || (Py_ssize_t)k > n_live) {
        Py_RETURN_NONE;
    }

    PyObject *active = PyObject_GetAttr(lock, s_active);
    if (active == NULL) {
        return NULL;
    }
    if (!PyList_CheckExact(active)) {
        Py_DECREF(active);
        PyErr_SetString(PyExc_TypeError, "lock._active must be a list (an mlsys RWLock)");
        return NULL;
    }
    if (PyList_Append(active, Py_None) < 0) {
        Py_DECREF(active);
        return NULL;
    }
    PyObject *out = NULL;
    PyObject *writer = PyObject_GetAttr(lock, s_writer);
    int busy = writer == NULL ? -1 : PyObject_IsTrue(writer);
    Py_XDECREF(writer);
    if (busy == 0) {
        PyObject *call_args[3] = {native, queries, k_obj};
        PyObject *result = PyObject_VectorcallMethod(s_knn_query, call_args, 3, NULL);
        if (result == NULL) {
            if (PyErr_ExceptionMatches(PyExc_RuntimeError)) {
                PyErr_Clear(); /* fewer than k reachable: the general path widens */
                out = Py_NewRef(Py_None);
            }
        } else {
            out = convert(result, PyArray_DIM((PyArrayObject *)queries, 0), k, l2);
            Py_DECREF(result);
            if (out == NULL && !PyErr_Occurred()) {
                out = Py_NewRef(Py_None); /* non-finite score: the general path validates */
            }
        }
    } else if (busy > 0) {
        out = Py_NewRef(Py_None); /* a writer holds or waits: the general path queues behind it */
    }
    if (release_read(lock, active) < 0) {
        Py_CLEAR(out);
    }
    Py_DECREF(active);
    return out;
}

static PyMethodDef methods[] = {
    {"search", (PyCFunction)(void (*)(void))fast_search, METH_FASTCALL,
     "search(native, queries, k, dim, n_live, l2, lock) -> (ids, scores) | None\n\n"
     "HNSWIndex's unfiltered search in one native call; None where the general path must answer."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_hnswfast", "Native fast path of mlsys.common.ann.HNSWIndex.search.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__hnswfast(void)
{
    import_array();
    s_knn_query = PyUnicode_InternFromString("knn_query");
    s_active = PyUnicode_InternFromString("_active");
    s_writer = PyUnicode_InternFromString("_writer");
    s_wake_writer = PyUnicode_InternFromString("wake_writer");
    int64_descr = PyArray_DescrFromType(NPY_INT64);
    if (!s_knn_query || !s_active || !s_writer || !s_wake_writer || !int64_descr) {
        return NULL;
    }
    return PyModule_Create(&module_def);
}
