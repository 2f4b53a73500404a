package tpmtoken

import (
	"slices"
	"sync"

	"github.com/tpm11/tpm11/ck"
)

// slotEvents is C_WaitForSlotEvent's state for one C_Initialize: a flag per
// slot, set when the slot's token changes and cleared when reported. A new
// Library starts with every flag clear, as the spec has C_Initialize do.
//
// Slot events are what this process does to its slots: C_InitToken puts a
// token into the empty slot (its slot ID is reported; the new empty slot
// that appears after it is not an event of its own, C_GetSlotList shows
// it) or re-initializes a token (a new token in the same slot). Tokens
// another process initializes appear only at the next C_Initialize.
type slotEvents struct {
	mu      sync.Mutex    // a leaf (docs/design.md "Locks")
	pending []uint64      // slots whose flag is set, ascending
	changed chan struct{} // closed and replaced when a flag is set
	closed  chan struct{} // closed by Library.Close
	waiters int           // callers blocked in WaitForSlotEvent
}

func newSlotEvents() *slotEvents {
	return &slotEvents{changed: make(chan struct{}), closed: make(chan struct{})}
}

// set raises slot id's flag and wakes blocked waiters.
func (ev *slotEvents) set(id uint64) {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if i, found := slices.BinarySearch(ev.pending, id); !found {
		ev.pending = slices.Insert(ev.pending, i, id)
	}
	close(ev.changed)
	ev.changed = make(chan struct{})
}

// close wakes every blocked waiter for good.
func (ev *slotEvents) close() {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	select {
	case <-ev.closed:
	default:
		close(ev.closed)
	}
}

// WaitForSlotEvent returns a slot whose event flag is set, clearing it (the
// lowest slot ID when several are set). With block false and no flag set it
// is CKR_NO_EVENT; with block true it waits for one. Once Close has begun
// it is CKR_CRYPTOKI_NOT_INITIALIZED, and a blocked caller wakes with that
// code: the spec's answer for a C_Finalize on another thread.
//
// It touches nothing Close frees, so the caller need not (and must not)
// hold off Close while it waits: C_Finalize would wait for the waiter and
// the waiter for C_Finalize.
func (l *Library) WaitForSlotEvent(block bool) (uint64, error) {
	ev := l.events
	for {
		ev.mu.Lock()
		select {
		case <-ev.closed:
			ev.mu.Unlock()
			return 0, ck.E(ck.CKR_CRYPTOKI_NOT_INITIALIZED)
		default:
		}
		if len(ev.pending) > 0 {
			id := ev.pending[0]
			ev.pending = ev.pending[1:]
			ev.mu.Unlock()
			return id, nil
		}
		if !block {
			ev.mu.Unlock()
			return 0, ck.E(ck.CKR_NO_EVENT)
		}
		changed := ev.changed
		ev.waiters++
		ev.mu.Unlock()
		select {
		case <-changed:
		case <-ev.closed:
		}
		ev.mu.Lock()
		ev.waiters--
		ev.mu.Unlock()
	}
}
