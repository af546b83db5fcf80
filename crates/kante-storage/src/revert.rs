//! A revert guard: steps of a multi-step change register how to undo
//! themselves; unless `success()` is called, the undos run in reverse order
//! when the guard is dropped (on an early `?` return or a panic).

type Undo = Box<dyn FnOnce() + Send>;

#[derive(Default)]
pub struct Revert {
    undo: Vec<Undo>,
}

impl Revert {
    pub fn new() -> Self {
        Revert { undo: Vec::new() }
    }

    pub fn add(&mut self, f: impl FnOnce() + Send + 'static) {
        self.undo.push(Box::new(f));
    }

    /// Appends the pending undos of `other` (they run before this guard's
    /// earlier ones, as if registered here).
    pub fn merge(&mut self, mut other: Revert) {
        self.undo.append(&mut other.undo);
    }

    /// Keeps everything done so far.
    pub fn success(mut self) {
        self.undo.clear();
    }

    /// Hands the pending undos to the caller (to undo later, e.g. after a
    /// further step that may fail).
    pub fn take(mut self) -> Revert {
        Revert {
            undo: std::mem::take(&mut self.undo),
        }
    }
}

impl Drop for Revert {
    fn drop(&mut self) {
        while let Some(f) = self.undo.pop() {
            f();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn undoes_in_reverse_unless_successful() {
        let log = Arc::new(Mutex::new(Vec::new()));
        {
            let mut r = Revert::new();
            for i in 0..3 {
                let l = log.clone();
                r.add(move || l.lock().unwrap().push(i));
            }
        }
        assert_eq!(*log.lock().unwrap(), vec![2, 1, 0]);
        log.lock().unwrap().clear();
        let mut r = Revert::new();
        let l = log.clone();
        r.add(move || l.lock().unwrap().push(9));
        r.success();
        assert!(log.lock().unwrap().is_empty());
    }
}
