//! The backend instance for a kind.

use isobox_common::{Backend, BackendKind, CreateOptions, Created, Error, Result, State};

pub fn for_kind(kind: BackendKind) -> Box<dyn Backend> {
    Box::new(Missing(kind))
}

struct Missing(BackendKind);

impl Missing {
    fn err<T>(&self) -> Result<T> {
        Err(Error::Backend(
            format!("the {} backend is not built in", self.0).into(),
        ))
    }
}

impl Backend for Missing {
    fn kind(&self) -> BackendKind {
        self.0
    }
    fn create(&self, _: &CreateOptions) -> Result<Created> {
        self.err()
    }
    fn start(&self, _: &State) -> Result<()> {
        self.err()
    }
    fn kill(&self, _: &State, _: i32, _: bool) -> Result<()> {
        self.err()
    }
    fn delete(&self, _: &State) -> Result<()> {
        self.err()
    }
    fn processes(&self, _: &State) -> Result<Vec<i32>> {
        self.err()
    }
}
