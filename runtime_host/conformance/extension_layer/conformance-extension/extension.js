// conformance-extension for images with node but no curl or python3.
const http = require("http");
const [host, port] = process.env.AWS_LAMBDA_RUNTIME_API.split(":");

function call(method, path, headers, body) {
  return new Promise((resolve, reject) => {
    const request = http.request({ host, port, method, path: "/2020-01-01/extension" + path, headers }, (answer) => {
      let data = "";
      answer.on("data", (chunk) => { data += chunk; });
      answer.on("end", () => resolve([answer.headers, data]));
    });
    request.on("error", reject);
    if (body) request.write(body);
    request.end();
  });
}

(async () => {
  const [headers] = await call("POST", "/register", { "Lambda-Extension-Name": "conformance-extension" },
                               '{"events": ["INVOKE", "SHUTDOWN"]}');
  const id = headers["lambda-extension-identifier"];
  console.log("conformance-extension: registered");
  for (;;) {
    const [, event] = await call("GET", "/event/next", { "Lambda-Extension-Identifier": id });
    console.log("conformance-extension: " + event);
    if (event.includes("SHUTDOWN")) process.exit(0);
  }
})();
