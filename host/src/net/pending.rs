//! The calls of one connection that did not finish in their first poll.
//!
//! Like `futures::stream::FuturesUnordered`, every call has a waker of its
//! own and only woken calls are polled. Unlike it, looking for a finished
//! call does not wake the connection's task again: `FuturesUnordered` does
//! that whenever it has polled every future it holds, which with one call
//! waiting (a forwarded call) is every time. Under tokio, a task that wakes
//! itself is queued as a yield, and tokio wakes another worker thread to
//! steal it: a thread wake-up, and a second run of the connection's task,
//! for every forwarded call.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::Stream;
use futures::future::BoxFuture;
use futures::task::{ArcWake, AtomicWaker, waker_ref};

/// Futures polled when woken, yielding their outputs as they finish.
pub(super) struct Pending<T> {
    /// A future per slot; `None` for a free slot.
    calls: Vec<Option<BoxFuture<'static, T>>>,
    /// The waker of each slot, made once and kept for the slot's next calls.
    slots: Vec<Arc<Slot>>,
    free: Vec<usize>,
    /// Woken slots taken from [`Woken::slots`], not polled yet, oldest
    /// first.
    ready: VecDeque<usize>,
    woken: Arc<Woken>,
    len: usize,
}

/// What the slots' wakers share with the set.
#[derive(Default)]
struct Woken {
    slots: Mutex<Vec<usize>>,
    /// The task polling the set.
    task: AtomicWaker,
}

struct Slot {
    index: usize,
    /// In [`Woken::slots`] and not polled since.
    queued: AtomicBool,
    woken: Arc<Woken>,
}

impl ArcWake for Slot {
    fn wake_by_ref(slot: &Arc<Self>) {
        if !slot.queued.swap(true, Ordering::AcqRel) {
            slot.woken
                .slots
                .lock()
                .expect("pending lock")
                .push(slot.index);
        }
        slot.woken.task.wake();
    }
}

impl<T> Pending<T> {
    pub fn new() -> Self {
        Pending {
            calls: Vec::new(),
            slots: Vec::new(),
            free: Vec::new(),
            ready: VecDeque::new(),
            woken: Arc::default(),
            len: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `call`, to be polled with its own waker the next time the set
    /// is polled (which the caller must do: this wakes no one).
    pub fn push(&mut self, call: BoxFuture<'static, T>) {
        let index = self.free.pop().unwrap_or_else(|| {
            let index = self.calls.len();
            self.calls.push(None);
            self.slots.push(Arc::new(Slot {
                index,
                queued: AtomicBool::new(false),
                woken: self.woken.clone(),
            }));
            index
        });
        self.calls[index] = Some(call);
        self.len += 1;
        // Queued without waking the task: it is the one pushing, and polls
        // the set next.
        self.slots[index].queued.store(true, Ordering::Release);
        self.ready.push_back(index);
    }
}

impl<T> Stream for Pending<T> {
    type Item = T;

    /// Polls the woken calls, each at most once per poll of the set: a call
    /// that wakes itself while polled wakes the task, and is polled again on
    /// the set's next poll.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let this = self.get_mut();
        this.woken.task.register(cx.waker());
        // Calls woken from here on wake the task, and wait for its next poll.
        this.ready
            .extend(this.woken.slots.lock().expect("pending lock").drain(..));
        while let Some(index) = this.ready.pop_front() {
            let slot = &this.slots[index];
            slot.queued.store(false, Ordering::Release);
            let Some(call) = this.calls[index].as_mut() else {
                // Woken after it finished (a waker kept by something it used).
                continue;
            };
            let waker = waker_ref(slot);
            if let Poll::Ready(output) = call.as_mut().poll(&mut Context::from_waker(&waker)) {
                this.calls[index] = None;
                this.free.push(index);
                this.len -= 1;
                return Poll::Ready(Some(output));
            }
        }
        if this.len == 0 {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use std::sync::atomic::AtomicUsize;
    use tokio::sync::oneshot;

    /// A waker that counts its wakes.
    struct Count(AtomicUsize);

    impl ArcWake for Count {
        fn wake_by_ref(count: &Arc<Self>) {
            count.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll<T>(pending: &mut Pending<T>, count: &Arc<Count>) -> Poll<Option<T>> {
        let waker = waker_ref(count);
        Pin::new(pending).poll_next(&mut Context::from_waker(&waker))
    }

    /// Adds a call that finishes with `id` once the returned sender sends.
    fn push_waiting(pending: &mut Pending<u32>, id: u32) -> oneshot::Sender<()> {
        let (tx, rx) = oneshot::channel::<()>();
        pending.push(Box::pin(async move {
            rx.await.unwrap();
            id
        }));
        tx
    }

    #[test]
    fn a_waiting_call_does_not_wake_the_task_that_polls_it() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let mut pending = Pending::new();
        let (tx, rx) = oneshot::channel::<u32>();
        pending.push(Box::pin(async move { rx.await.unwrap() + 1 }));
        assert!(poll(&mut pending, &count).is_pending());
        assert!(poll(&mut pending, &count).is_pending());
        // FuturesUnordered would have woken its task on each of those polls.
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        tx.send(41).unwrap();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(poll(&mut pending, &count), Poll::Ready(Some(42)));
        assert!(pending.is_empty());
        assert_eq!(poll(&mut pending, &count), Poll::Ready(None));
    }

    #[test]
    fn calls_finish_in_the_order_they_are_woken_and_slots_are_reused() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let mut pending = Pending::new();
        let mut senders: Vec<_> = (0..3).map(|id| push_waiting(&mut pending, id)).collect();
        assert!(poll(&mut pending, &count).is_pending());
        senders.remove(2).send(()).unwrap();
        assert_eq!(poll(&mut pending, &count), Poll::Ready(Some(2)));
        senders.remove(0).send(()).unwrap();
        assert_eq!(poll(&mut pending, &count), Poll::Ready(Some(0)));
        // A new call takes a freed slot.
        let tx = push_waiting(&mut pending, 7);
        assert!(poll(&mut pending, &count).is_pending());
        assert_eq!(pending.slots.len(), 3);
        tx.send(()).unwrap();
        senders.remove(0).send(()).unwrap();
        let mut done = vec![
            futures::executor::block_on(pending.next()).unwrap(),
            futures::executor::block_on(pending.next()).unwrap(),
        ];
        done.sort_unstable();
        assert_eq!(done, [1, 7]);
        assert!(pending.is_empty());
    }

    #[test]
    fn calls_woken_together_finish_oldest_wake_first() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let mut pending = Pending::new();
        let mut senders: Vec<_> = (0..4)
            .map(|id| Some(push_waiting(&mut pending, id)))
            .collect();
        assert!(poll(&mut pending, &count).is_pending());
        for id in [2, 0, 3, 1] {
            senders[id].take().unwrap().send(()).unwrap();
        }
        let done: Vec<u32> = (0..4)
            .map(|_| match poll(&mut pending, &count) {
                Poll::Ready(Some(id)) => id,
                other => panic!("expected a finished call, got {other:?}"),
            })
            .collect();
        assert_eq!(done, [2, 0, 3, 1]);
    }

    #[test]
    fn a_call_that_wakes_itself_is_polled_once_per_poll() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let mut pending = Pending::new();
        let polls = Arc::new(AtomicUsize::new(0));
        let seen = polls.clone();
        pending.push(Box::pin(std::future::poll_fn(move |cx| {
            seen.fetch_add(1, Ordering::SeqCst);
            cx.waker().wake_by_ref();
            Poll::<()>::Pending
        })));
        assert!(poll(&mut pending, &count).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 1);
        // Its wake-up is passed on, so the task comes back for it.
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(poll(&mut pending, &count).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 2);
    }
}
