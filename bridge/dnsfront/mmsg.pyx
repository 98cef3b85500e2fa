# cython: language_level=3
"""UDP datagrams in batches: one ``recvmmsg`` and one ``sendmmsg`` per reader wake-up.

The compiled build's UDP path (the pure-Python build uses ``udpio.Datagrams``, one
``recvfrom`` and one ``sendto`` per datagram, with the same interface). A cached answer cost
5.67 µs of CPU against NSD's 4.61, most of it in those two system calls and the address
tuples they make; NSD batches the same way. The buffers are allocated once: DNS_UDP_DRAIN_BATCH
slots of DNS_MAX_UDP_PAYLOAD bytes (a longer datagram is cut, as ``recvfrom`` cut it), their
senders' addresses kept raw so that a reply goes back without building or parsing a tuple.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItemWithError
from cpython.float cimport PyFloat_AsDouble
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from cpython.tuple cimport PyTuple_GET_ITEM
from libc.errno cimport EAGAIN, EINTR, ENOBUFS, errno
from cpython.unicode cimport PyUnicode_DecodeASCII
from libc.stdint cimport uint64_t
from libc.string cimport memcmp, memcpy, memset

cdef extern from "<errno.h>":
    int EWOULDBLOCK  # EAGAIN on Linux; both named, as POSIX allows them to differ

cdef extern from "<sys/uio.h>":
    struct iovec:
        void *iov_base
        size_t iov_len

cdef extern from "<sys/socket.h>":
    ctypedef unsigned int socklen_t
    ctypedef unsigned short sa_family_t
    struct sockaddr_storage:
        sa_family_t ss_family
    struct msghdr:
        void *msg_name
        socklen_t msg_namelen
        iovec *msg_iov
        size_t msg_iovlen
        void *msg_control
        size_t msg_controllen
        int msg_flags
    struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len
    int recvmmsg(int fd, mmsghdr *msgs, unsigned int vlen, int flags, void *timeout) nogil
    int sendmmsg(int fd, mmsghdr *msgs, unsigned int vlen, int flags) nogil
    int AF_INET
    int AF_INET6
    int MSG_DONTWAIT

cdef extern from "<netinet/in.h>":
    struct in_addr:
        pass
    struct in6_addr:
        pass
    struct sockaddr_in:
        unsigned short sin_port
        in_addr sin_addr
    struct sockaddr_in6:
        unsigned short sin6_port
        unsigned int sin6_flowinfo
        in6_addr sin6_addr
        unsigned int sin6_scope_id
    int INET6_ADDRSTRLEN

cdef extern from "<arpa/inet.h>":
    const char *inet_ntop(int af, const void *src, char *dst, socklen_t size)
    unsigned short ntohs(unsigned short)
    unsigned int ntohl(unsigned int)

# EAGAIN and ENOBUFS on send: the socket's buffer is full, and the rest of the batch would
# meet the same (the box is overloaded: the clients' retries are the queue)
cdef inline bint _full(int err) noexcept:
    return err == EAGAIN or err == EWOULDBLOCK or err == ENOBUFS


cdef uint64_t _MIX = 0x9E3779B97F4A7C15ULL  # 2**64 / golden ratio: the key memo's hash


cdef inline const void *_address(sockaddr_storage *name, size_t *size) noexcept:
    """The raw address of ``name`` (IPv4 or IPv6, no port) and, in ``size``, its length."""
    if name.ss_family == AF_INET6:
        size[0] = 16
        return &(<sockaddr_in6 *>name).sin6_addr
    size[0] = 4
    return &(<sockaddr_in *>name).sin_addr


cdef str _ipv4_text(const unsigned char *octets):
    """Dotted quad, as inet_ntop (and recvfrom's addr[0]) writes it."""
    cdef char text[16]
    cdef int n = 0, k, v
    for k in range(4):
        v = octets[k]
        if v >= 100:
            text[n] = 48 + v // 100
            n += 1
        if v >= 10:
            text[n] = 48 + (v // 10) % 10
            n += 1
        text[n] = 48 + v % 10
        n += 1
        if k < 3:
            text[n] = 46  # "."
            n += 1
    return PyUnicode_DecodeASCII(text, n, NULL)


cdef class Batch:
    """One batch of received datagrams and the replies to them, reused for every wake-up.

    ``recv`` fills it (one ``recvmmsg``), ``answer`` queues the cached replies to a run of
    datagrams and ``reply`` the answer to datagram ``i`` (its sender's raw address, no
    tuple), ``flush`` sends them all (``sendmmsg``, again after a partial send) and says
    which failed. One Batch serves every listener of a server: a reader callback runs to its
    end before the next one starts."""

    cdef mmsghdr *rmsgs
    cdef mmsghdr *smsgs
    cdef iovec *riov
    cdef iovec *siov  # two a reply: its ID and the rest (one for a reply given whole)
    cdef sockaddr_storage *names
    cdef char *buf
    cdef int *origin  # queued reply -> index of the datagram it answers
    cdef int size, slot, count, queued
    cdef list out  # the queued replies' bytes, alive until sent
    # the source address host() last formatted, and its text: a batch's datagrams mostly come
    # from a few clients (CoreDNS, one resolver), and the text is the view's cache key
    cdef int last_family
    cdef unsigned char last_raw[16]
    cdef str last_host
    # the key memo: query bytes after the ID as bytes objects, one a slot by a hash of the
    # bytes (a later query there takes the slot). A query seen before is looked up with the
    # same object, whose SipHash Python keeps, instead of a new bytes object hashed anew
    cdef PyObject **keys
    cdef uint64_t keys_mask
    cdef Py_ssize_t key_max

    def __cinit__(self, int size, int slot, int keys=0, int key_max=0):
        if size <= 0 or slot <= 0:
            raise ValueError("size and slot must be positive")
        if keys < 0 or keys & (keys - 1):
            raise ValueError("keys must be 0 or a power of two")
        self.size, self.slot = size, slot
        self.keys = NULL
        self.keys_mask = keys - 1 if keys else 0
        self.key_max = key_max
        if keys:
            self.keys = <PyObject **>PyMem_Malloc(keys * sizeof(PyObject *))
            if not self.keys:
                raise MemoryError()
            memset(self.keys, 0, keys * sizeof(PyObject *))
        self.rmsgs = <mmsghdr *>PyMem_Malloc(size * sizeof(mmsghdr))
        self.smsgs = <mmsghdr *>PyMem_Malloc(size * sizeof(mmsghdr))
        self.riov = <iovec *>PyMem_Malloc(size * sizeof(iovec))
        self.siov = <iovec *>PyMem_Malloc(2 * size * sizeof(iovec))
        self.names = <sockaddr_storage *>PyMem_Malloc(size * sizeof(sockaddr_storage))
        self.origin = <int *>PyMem_Malloc(size * sizeof(int))
        self.buf = <char *>PyMem_Malloc(<size_t>size * slot)
        if not (self.rmsgs and self.smsgs and self.riov and self.siov and self.names
                and self.origin and self.buf):
            raise MemoryError()
        memset(self.rmsgs, 0, size * sizeof(mmsghdr))
        memset(self.smsgs, 0, size * sizeof(mmsghdr))
        cdef int i
        for i in range(size):
            self.riov[i].iov_base = self.buf + <size_t>i * slot
            self.riov[i].iov_len = slot
            self.rmsgs[i].msg_hdr.msg_name = &self.names[i]
            self.rmsgs[i].msg_hdr.msg_iov = &self.riov[i]
            self.rmsgs[i].msg_hdr.msg_iovlen = 1
            self.smsgs[i].msg_hdr.msg_iov = &self.siov[2 * i]
            self.smsgs[i].msg_hdr.msg_iovlen = 1
            self.rmsgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage)
        self.count = self.queued = 0
        self.out = []
        self.last_family = 0
        self.last_host = None

    def __dealloc__(self):
        cdef uint64_t k
        if self.keys:
            for k in range(self.keys_mask + 1):
                Py_XDECREF(self.keys[k])
            PyMem_Free(self.keys)
        PyMem_Free(self.rmsgs)
        PyMem_Free(self.smsgs)
        PyMem_Free(self.riov)
        PyMem_Free(self.siov)
        PyMem_Free(self.names)
        PyMem_Free(self.origin)
        PyMem_Free(self.buf)

    @property
    def capacity(self) -> int:
        return self.size

    def recv(self, sock) -> int:
        """Receive the datagrams waiting on ``sock``, at most ``capacity``: how many (0 when
        there are none, EAGAIN); OSError for another error with nothing received. They stay
        in the batch's buffers: ``data(i)`` makes one a bytes object, ``answer`` needs none."""
        cdef int fd = sock.fileno()
        cdef int i, n
        for i in range(self.count):  # recvmmsg wrote the lengths of those it filled
            self.rmsgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage)
        self.count = self.queued = 0
        self.out.clear()
        while True:
            n = recvmmsg(fd, self.rmsgs, self.size, MSG_DONTWAIT, NULL)
            if n >= 0:
                break
            if errno == EINTR:
                continue
            if errno == EAGAIN or errno == EWOULDBLOCK:
                return 0
            raise OSError(errno, "recvmmsg failed")
        self.count = n
        return n

    cdef object _key(self, const char *p, Py_ssize_t n):
        """The bytes ``p[:n]`` as a bytes object: the memo's when it holds them, else a new one
        (kept in the memo when at most ``key_max`` long)."""
        cdef uint64_t h = _MIX ^ <uint64_t>n, w
        cdef Py_ssize_t j = 0
        cdef PyObject *held
        if self.keys == NULL or n > self.key_max:
            return PyBytes_FromStringAndSize(p, n)
        while j + 8 <= n:  # a multiplicative hash a word at a time: ~40 instructions
            memcpy(&w, p + j, 8)
            h = (h ^ w) * _MIX
            h ^= h >> 29
            j += 8
        w = 0
        memcpy(&w, p + j, n - j)
        h = (h ^ w) * _MIX
        h ^= h >> 32
        held = self.keys[h & self.keys_mask]
        if held != NULL and PyBytes_GET_SIZE(<object>held) == n and memcmp(
            PyBytes_AS_STRING(<object>held), p, n
        ) == 0:
            return <object>held
        key = PyBytes_FromStringAndSize(p, n)
        Py_INCREF(key)
        Py_XDECREF(held)
        self.keys[h & self.keys_mask] = <PyObject *>key
        return key

    def data(self, int i) -> bytes:
        """Datagram ``i``'s bytes."""
        self._name(i)
        return PyBytes_FromStringAndSize(<char *>self.riov[i].iov_base, self.rmsgs[i].msg_len)

    def answer(self, int i, dict entries, epoch, double now) -> int:
        """Queue the cached replies to datagram ``i`` and those after it from the same sender
        address (any port): while a datagram's bytes after its ID are a key of ``entries``
        (a ResponseCache's) whose entry is valid after ``now`` and of ``epoch``, its reply is
        its own ID and the entry's stored bytes (fastpath.cached's first case, without a
        bytes object for the datagram, its ID or the reply: two iovecs, sent by ``flush``).
        Returns the index of the first datagram not answered (``i`` if none was; the batch's
        count if every one was): the caller takes that one the slow way, or a new sender's
        view. Callgrind, loadtest.udpcost, batches of 16: the README's "UDP batching" has
        the figures."""
        cdef sockaddr_storage *first = self._name(i)
        cdef sockaddr_storage *name
        cdef int n = self.count, family = first.ss_family, q
        cdef size_t size, other
        cdef const void *raw = _address(first, &size)
        cdef unsigned int length
        cdef PyObject *found
        cdef object found_obj, tail, valid, used
        cdef tuple entry
        while i < n:
            name = &self.names[i]
            if name.ss_family != family or memcmp(_address(name, &other), raw, size) != 0:
                break
            length = self.rmsgs[i].msg_len
            if length < 12:  # not even a header: the slow path says what it is
                break
            found = PyDict_GetItemWithError(
                entries, self._key(<char *>self.riov[i].iov_base + 2, length - 2)
            )
            if found is NULL:
                break
            found_obj = <object>found
            if type(found_obj) is not tuple:
                break
            entry = found_obj
            if len(entry) != 3:
                break
            valid = <object>PyTuple_GET_ITEM(entry, 1)
            used = <object>PyTuple_GET_ITEM(entry, 2)
            tail = <object>PyTuple_GET_ITEM(entry, 0)
            if not PyFloat_AsDouble(valid) > now or (used is not epoch and used != epoch):
                break  # stale, or an older epoch's (cached() makes it the most recent)
            if type(tail) is not bytes:
                break
            q = self.queued
            if q >= self.size:
                raise IndexError("the batch's replies are full")
            self.out.append(tail)  # alive until sent, whatever the cache does meanwhile
            self.siov[2 * q].iov_base = self.riov[i].iov_base  # the client's own ID
            self.siov[2 * q].iov_len = 2
            self.siov[2 * q + 1].iov_base = PyBytes_AS_STRING(tail)
            self.siov[2 * q + 1].iov_len = PyBytes_GET_SIZE(tail)
            self.smsgs[q].msg_hdr.msg_iovlen = 2
            self.smsgs[q].msg_hdr.msg_name = name
            self.smsgs[q].msg_hdr.msg_namelen = self.rmsgs[i].msg_hdr.msg_namelen
            self.origin[q] = i
            self.queued = q + 1
            i += 1
        return i

    cdef inline sockaddr_storage *_name(self, int i) except NULL:
        if i < 0 or i >= self.count:
            raise IndexError("no such datagram in the batch")
        return &self.names[i]

    def host(self, int i) -> str:
        """Datagram ``i``'s source address, as ``recvfrom``'s ``addr[0]`` gives it.

        The last one's text is kept and handed out again while the sender is the same, and an
        IPv4 address is formatted here, not by inet_ntop and a bytes.decode call. Callgrind,
        DnsServer._udp_ready on batches of 64 cached queries from one loopback client (as
        dnsperf in loadtest "udp"): 7,562 -> 5,309 instructions per cached answer."""
        cdef sockaddr_storage *name = self._name(i)
        cdef char text[64]
        cdef size_t size
        cdef const void *raw = _address(name, &size)
        cdef int family = name.ss_family
        if family == self.last_family and memcmp(raw, self.last_raw, size) == 0:
            return self.last_host
        if family == AF_INET6:
            if inet_ntop(family, raw, text, sizeof(text)) == NULL:
                raise OSError(errno, "inet_ntop failed")
            host = text.decode("ascii")
        else:
            host = _ipv4_text(<const unsigned char *>raw)
        memcpy(self.last_raw, raw, size)
        self.last_family = family
        self.last_host = host
        return host

    def addr(self, int i) -> tuple:
        """Datagram ``i``'s source address as ``recvfrom`` gives it: (host, port) for IPv4,
        (host, port, flowinfo, scope_id) for IPv6."""
        cdef sockaddr_storage *name = self._name(i)
        cdef sockaddr_in6 *six
        host = self.host(i)
        if name.ss_family == AF_INET6:
            six = <sockaddr_in6 *>name
            return (host, ntohs(six.sin6_port), ntohl(six.sin6_flowinfo), six.sin6_scope_id)
        return (host, ntohs((<sockaddr_in *>name).sin_port))

    def reply(self, int i, bytes data) -> None:
        """Queue ``data`` for the sender of datagram ``i`` (sent by ``flush``)."""
        self._name(i)
        cdef int q = self.queued
        if q >= self.size:
            raise IndexError("the batch's replies are full")
        self.out.append(data)
        self.siov[2 * q].iov_base = PyBytes_AS_STRING(data)
        self.siov[2 * q].iov_len = PyBytes_GET_SIZE(data)
        self.smsgs[q].msg_hdr.msg_iovlen = 1
        self.smsgs[q].msg_hdr.msg_name = &self.names[i]
        self.smsgs[q].msg_hdr.msg_namelen = self.rmsgs[i].msg_hdr.msg_namelen
        self.origin[q] = i
        self.queued = q + 1

    def flush(self, sock) -> list:
        """Send the queued replies; [(datagram index, errno)] of those not sent.

        ``sendmmsg`` stops at a message that fails and reports the ones before it; the
        failed one (EMSGSIZE, EACCES, ...) is skipped and the rest sent. A full socket
        buffer (EAGAIN, ENOBUFS) drops the rest of the batch: the next wake-up's batch would
        meet the same buffer, and a DNS client retries."""
        cdef int fd = sock.fileno()
        cdef int start = 0, n, err, q = self.queued
        cdef list failed = []
        while start < q:
            n = sendmmsg(fd, &self.smsgs[start], q - start, MSG_DONTWAIT)
            if n > 0:
                start += n
                continue
            err = errno if n < 0 else EAGAIN
            if err == EINTR:
                continue
            if _full(err):
                while start < q:
                    failed.append((self.origin[start], err))
                    start += 1
                break
            failed.append((self.origin[start], err))
            start += 1
        self.queued = 0
        self.out.clear()
        return failed
