//! `postern quickstart`: the whole gateway on loopback with demo upstreams.

use crate::runtime::serve::StartError;

pub async fn run(_port: u16) -> Result<(), StartError> {
    Ok(())
}
