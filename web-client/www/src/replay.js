// Replay page (admins): one session's recording in asciinema-player.
import * as AsciinemaPlayer from "asciinema-player";
import "asciinema-player/dist/bundle/asciinema-player.css";

const session = decodeURIComponent(location.pathname.split("/").pop() ?? "");
const src = `/api/recordings/${encodeURIComponent(session)}`;
document.getElementById("title").textContent = `Session ${session}`;
const download = document.getElementById("download");
download.href = src;
download.download = `${session}.cast`;

const player = AsciinemaPlayer.create(src, document.getElementById("player"), {
  fit: "width",
  idleTimeLimit: 2,
  // `?autoplay` (tests, links from the audit page) starts at once.
  autoPlay: new URLSearchParams(location.search).has("autoplay"),
  speed: Number(new URLSearchParams(location.search).get("speed") ?? 1) || 1,
});
window.sallyportReplay = player;
player.addEventListener("ended", () => (document.body.dataset.ended = "true"));
