//! A component that does not implement `dynhost:op`; used to test the load error.

wit_bindgen::generate!({ path: "wit", world: "wrong" });

struct Wrong;

impl Guest for Wrong {
    fn run() -> String {
        "not a dynhost op".into()
    }
}

export!(Wrong);
