# A demo SSH server for the compose setup: user "demo", password "demo".
# For demonstration only; it is reachable only inside the compose network,
# through the Sallyport connector.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends openssh-server \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /run/sshd \
 && ssh-keygen -A \
 && useradd --create-home --shell /bin/bash demo \
 && echo 'demo:demo' | chpasswd \
 && printf 'PasswordAuthentication yes\nKbdInteractiveAuthentication yes\nPermitRootLogin no\n' \
      > /etc/ssh/sshd_config.d/sallyport-demo.conf
EXPOSE 22
CMD ["/usr/sbin/sshd", "-D", "-e"]
