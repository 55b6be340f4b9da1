//! Opening loopback TCP connections the way a load tool must.
//!
//! - Bind to a chosen source address before connecting: one source/destination pair has only
//!   ~28,000 ephemeral ports, so connections are spread over 127.0.0.2, 127.0.0.3, ...
//! - `SO_LINGER` 0: closing sends a reset instead of leaving the socket in TIME_WAIT, so runs that
//!   open tens of thousands of connections do not exhaust ports for the next run.
//! - `TCP_NODELAY`: small publishes and requests go out at once.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::net::{TcpSocket, TcpStream};

/// Connects to `dst`, from `src` (port chosen by the kernel) when given.
pub async fn connect(dst: SocketAddr, src: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let domain = if dst.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_linger(Some(Duration::ZERO))?;
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    if let Some(src) = src {
        socket.bind(&SockAddr::from(SocketAddr::new(src, 0)))?;
    }
    let socket = TcpSocket::from_std_stream(std::net::TcpStream::from(socket));
    socket.connect(dst).await
}

/// Source addresses `127.0.0.2 ..` (`count` of them), for spreading connections.
pub fn source_addresses(count: usize) -> Vec<IpAddr> {
    (0..count.clamp(1, 250))
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i as u8)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connects_from_a_chosen_loopback_source() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("listen");
        let dst = listener.local_addr().expect("addr");
        let src: IpAddr = "127.0.0.3".parse().expect("ip");
        let (client, accepted) = tokio::join!(connect(dst, Some(src)), listener.accept());
        let client = client.expect("connect");
        let (_, peer) = accepted.expect("accept");
        assert_eq!(client.local_addr().expect("local").ip(), src);
        assert_eq!(peer.ip(), src);
    }

    #[test]
    fn source_addresses_start_at_127_0_0_2() {
        let v = source_addresses(3);
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].to_string(), "127.0.0.2");
        assert_eq!(v[2].to_string(), "127.0.0.4");
    }
}
