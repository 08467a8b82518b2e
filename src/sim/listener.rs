//! A TCP listener whose connections the simulator can cut after it has handled a
//! request, to act out "the request was applied but the answer never came".

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Peers whose connection is cut at its next write.
#[derive(Clone, Default)]
pub struct Doomed(Arc<Mutex<HashSet<SocketAddr>>>);

impl Doomed {
    pub fn cut(&self, peer: SocketAddr) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(peer);
    }

    fn take(&self, peer: &SocketAddr) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(peer)
    }
}

pub struct SimListener {
    tcp: TcpListener,
    doomed: Doomed,
}

impl SimListener {
    pub fn new(tcp: TcpListener, doomed: Doomed) -> SimListener {
        SimListener { tcp, doomed }
    }
}

impl Listener for SimListener {
    type Io = SimStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (SimStream, SocketAddr) {
        loop {
            match self.tcp.accept().await {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let io = SimStream {
                        stream,
                        peer,
                        doomed: self.doomed.clone(),
                        cut: false,
                    };
                    return (io, peer);
                }
                Err(e) => {
                    tracing::warn!("simulator accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// The client's address, for handlers that may cut their connection.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

impl Connected<IncomingStream<'_, SimListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, SimListener>) -> Peer {
        Peer(*stream.remote_addr())
    }
}

pub struct SimStream {
    stream: TcpStream,
    peer: SocketAddr,
    doomed: Doomed,
    cut: bool,
}

impl SimStream {
    fn check_cut(&mut self) -> bool {
        if !self.cut && self.doomed.take(&self.peer) {
            self.cut = true;
        }
        self.cut
    }
}

fn reset() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        "simulator cut the connection",
    )
}

impl AsyncRead for SimStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.cut {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.check_cut() {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.check_cut() {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.check_cut() {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
