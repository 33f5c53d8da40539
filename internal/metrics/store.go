package metrics

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"moat/internal/store"
)

// op is a store operation, the label of its latency and errors.
type op uint8

const (
	opLookup op = iota
	opHost
	opPutHost
	opUpdateHost
	opDeleteHost
	opHosts
	opTriplet
	opPutTriplet
	opTriplets
	opTraps
	opAddTrap
	opDelTrap
	opAdd
	opCounters
	opGet
	opPut
	opDelete
	opScan
	opRecords
	opTally
	opDropTally
	opFlush
	numOps
)

var opNames = [numOps]string{"lookup", "host", "put_host", "update_host", "delete_host", "hosts", "triplet",
	"put_triplet", "triplets", "traps", "add_trap", "del_trap", "add", "counters", "get", "put", "delete", "scan",
	"records", "tally", "drop_tally", "flush"}

// StoreLatencyBuckets are the upper bounds, in seconds, of the store
// latency histogram: from a read served from memory (well under 10µs) to
// a flush that waits for a disk or for Redis replicas.
var StoreLatencyBuckets = []float64{.00001, .0001, .0005, .001, .005, .01, .05, .1, .5, 1, 5}

// storeMetrics are the store's latency and error children by op.
type storeMetrics struct {
	latency [numOps]prometheus.Observer
	errors  [numOps]prometheus.Counter
}

func newStoreMetrics(f factory) storeMetrics {
	lat := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "moat_store_operation_duration_seconds",
		Help:    "Time store operations took, by operation (iterations over all hosts, triplets or records are not timed). Reads are served from memory; flush waits until writes are durable.",
		Buckets: StoreLatencyBuckets,
	}, []string{"op"})
	f.reg.MustRegister(lat)
	errs := f.counterVec("moat_store_errors_total", "Store operations that failed, by operation (a deletion of nothing is no failure).", "op")
	var sm storeMetrics
	for o := op(0); o < numOps; o++ {
		sm.latency[o] = lat.WithLabelValues(opNames[o])
		sm.errors[o] = errs.WithLabelValues(opNames[o])
	}
	return sm
}

// Store returns st with every operation timed and its failures counted.
// What st offers beyond store.Store (a shared store's change feed and
// outage report) stays visible through the wrapper.
func (m *Metrics) Store(st store.Store) store.Store {
	t := &timedStore{st: st, m: &m.store}
	w, watches := st.(store.Watcher)
	d, downs := st.(downReporter)
	switch {
	case watches && downs:
		return &sharedStore{timedStore: t, Watcher: w, downReporter: d}
	case watches:
		return &watchedStore{timedStore: t, Watcher: w}
	case downs:
		return &downStore{timedStore: t, downReporter: d}
	}
	return t
}

// downReporter is a store that can be unreachable and says since when
// (the Redis store); admin's status asks it.
type downReporter interface{ Down() (bool, time.Time) }

type (
	sharedStore struct {
		*timedStore
		store.Watcher
		downReporter
	}
	watchedStore struct {
		*timedStore
		store.Watcher
	}
	downStore struct {
		*timedStore
		downReporter
	}
)

// timedStore times the operations of st.
type timedStore struct {
	st store.Store
	m  *storeMetrics
}

// done records one operation that started at start and ended with err.
func (t *timedStore) done(o op, start time.Time, err error) {
	t.m.latency[o].Observe(time.Since(start).Seconds())
	t.failed(o, err)
}

func (t *timedStore) failed(o op, err error) {
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.m.errors[o].Inc()
	}
}

func (t *timedStore) Lookup(addr netip.Addr) (store.Host, bool, error) {
	start := time.Now()
	h, ok, err := t.st.Lookup(addr)
	t.done(opLookup, start, err)
	return h, ok, err
}

func (t *timedStore) Host(p netip.Prefix) (store.Host, bool, error) {
	start := time.Now()
	h, ok, err := t.st.Host(p)
	t.done(opHost, start, err)
	return h, ok, err
}

func (t *timedStore) PutHost(h store.Host) error {
	start := time.Now()
	err := t.st.PutHost(h)
	t.done(opPutHost, start, err)
	return err
}

func (t *timedStore) UpdateHost(p netip.Prefix, fn func(old store.Host, ok bool) (store.Host, bool)) (store.Host, bool, error) {
	start := time.Now()
	h, wrote, err := t.st.UpdateHost(p, fn)
	t.done(opUpdateHost, start, err)
	return h, wrote, err
}

func (t *timedStore) DeleteHost(p netip.Prefix) error {
	start := time.Now()
	err := t.st.DeleteHost(p)
	t.done(opDeleteHost, start, err)
	return err
}

func (t *timedStore) Hosts(fn func(store.Host) bool) error {
	err := t.st.Hosts(fn)
	t.failed(opHosts, err)
	return err
}

func (t *timedStore) Triplet(tr store.Triplet) (store.Attempt, bool, error) {
	start := time.Now()
	a, ok, err := t.st.Triplet(tr)
	t.done(opTriplet, start, err)
	return a, ok, err
}

func (t *timedStore) PutTriplet(tr store.Triplet, a store.Attempt) error {
	start := time.Now()
	err := t.st.PutTriplet(tr, a)
	t.done(opPutTriplet, start, err)
	return err
}

func (t *timedStore) Triplets(fn func(store.TripletID, store.Attempt) bool) error {
	err := t.st.Triplets(fn)
	t.failed(opTriplets, err)
	return err
}

func (t *timedStore) PutTripletID(id store.TripletID, a store.Attempt) error {
	start := time.Now()
	err := t.st.PutTripletID(id, a)
	t.done(opPutTriplet, start, err)
	return err
}

func (t *timedStore) Traps() ([]string, error) {
	start := time.Now()
	ts, err := t.st.Traps()
	t.done(opTraps, start, err)
	return ts, err
}

func (t *timedStore) AddTrap(addr string) error {
	start := time.Now()
	err := t.st.AddTrap(addr)
	t.done(opAddTrap, start, err)
	return err
}

func (t *timedStore) DelTrap(addr string) error {
	start := time.Now()
	err := t.st.DelTrap(addr)
	t.done(opDelTrap, start, err)
	return err
}

func (t *timedStore) Add(counter string, delta int64) error {
	start := time.Now()
	err := t.st.Add(counter, delta)
	t.done(opAdd, start, err)
	return err
}

func (t *timedStore) Counters() (map[string]int64, error) {
	start := time.Now()
	c, err := t.st.Counters()
	t.done(opCounters, start, err)
	return c, err
}

func (t *timedStore) Get(kind, key string) ([]byte, bool, error) {
	start := time.Now()
	b, ok, err := t.st.Get(kind, key)
	t.done(opGet, start, err)
	return b, ok, err
}

func (t *timedStore) Put(kind, key string, val []byte, expires time.Time) error {
	start := time.Now()
	err := t.st.Put(kind, key, val, expires)
	t.done(opPut, start, err)
	return err
}

func (t *timedStore) Delete(kind, key string) error {
	start := time.Now()
	err := t.st.Delete(kind, key)
	t.done(opDelete, start, err)
	return err
}

func (t *timedStore) Scan(kind string, fn func(key string, val []byte) bool) error {
	err := t.st.Scan(kind, fn)
	t.failed(opScan, err)
	return err
}

func (t *timedStore) Records(fn func(kind, key string, val []byte, expires time.Time) bool) error {
	err := t.st.Records(fn)
	t.failed(opRecords, err)
	return err
}

func (t *timedStore) Tally(key, member string, at time.Time, window time.Duration, limit int) (int, error) {
	start := time.Now()
	n, err := t.st.Tally(key, member, at, window, limit)
	t.done(opTally, start, err)
	return n, err
}

func (t *timedStore) DropTally(key string) error {
	start := time.Now()
	err := t.st.DropTally(key)
	t.done(opDropTally, start, err)
	return err
}

func (t *timedStore) Flush(ctx context.Context) error {
	start := time.Now()
	err := t.st.Flush(ctx)
	t.done(opFlush, start, err)
	return err
}

func (t *timedStore) Close() error { return t.st.Close() }
