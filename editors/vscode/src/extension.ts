// DeepShiva for VS Code: starts the deepshiva-lsp language server and lets vscode-languageclient
// (>= 10: LSP 3.18 textDocument/inlineCompletion built in) show its suggestions as ghost text.
// This file adds what the protocol does not: settings and the API key (secret storage), a status
// bar item fed by the server's `deepshiva/status` notification, and a few commands.
// The client registers the server's own commands (deepshiva.loadModel, deepshiva.stats, ...) as
// VS Code commands, so this extension's commands must use other ids.
import * as fs from "fs";
import * as path from "path";
import * as vscode from "vscode";
import {
  LanguageClient,
  LanguageClientOptions,
  ServerOptions,
  State,
  TransportKind,
} from "vscode-languageclient/node";

const SECTION = "deepshiva";
const SECRET_API_KEY = "deepshiva.apiKey";

type ServerState = "ready" | "loading" | "unreachable" | "no_model" | "unauthorized" | "slow";

interface StatusParams {
  state: ServerState | string;
  message?: string;
}

const STATE_LABEL: Record<string, { icon: string; text: string }> = {
  ready: { icon: "$(check)", text: "ready" },
  loading: { icon: "$(loading~spin)", text: "loading" },
  unreachable: { icon: "$(debug-disconnect)", text: "unreachable" },
  no_model: { icon: "$(circle-slash)", text: "no model" },
  unauthorized: { icon: "$(lock)", text: "unauthorized" },
  slow: { icon: "$(watch)", text: "slow" },
  starting: { icon: "$(loading~spin)", text: "starting" },
  stopped: { icon: "$(error)", text: "stopped" },
};

let client: LanguageClient | undefined;
let statusItem: vscode.StatusBarItem;
let lastState: StatusParams = { state: "starting" };
let output: vscode.LogOutputChannel;

/** Where deepshiva-lsp is: the setting, a workspace's .venv, then PATH. In an untrusted
 * workspace the caller passes no folders: a program inside the workspace is never started. */
export function findServer(configured: string, folders: readonly string[]): string {
  const expand = (p: string) => p.replace(/^~(?=$|\/)/, process.env.HOME ?? "~");
  if (configured.trim()) {
    return expand(configured.trim());
  }
  const exe = process.platform === "win32" ? "deepshiva-lsp.exe" : "deepshiva-lsp";
  const bin = process.platform === "win32" ? "Scripts" : "bin";
  for (const folder of folders) {
    for (const venv of [".venv", "venv"]) {
      const candidate = path.join(folder, venv, bin, exe);
      if (fs.existsSync(candidate)) {
        return candidate;
      }
    }
  }
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    const candidate = path.join(dir, exe);
    if (dir && fs.existsSync(candidate)) {
      return candidate;
    }
  }
  return exe; // let the spawn fail with a clear "not found" in the log
}

function config(): vscode.WorkspaceConfiguration {
  return vscode.workspace.getConfiguration(SECTION);
}

function enabled(): boolean {
  return config().get<boolean>("enabled", true);
}

/** The settings the server reads, camelCase, with the API key from secret storage. */
async function serverSettings(secrets: vscode.SecretStorage): Promise<Record<string, unknown>> {
  const c = config();
  const settings: Record<string, unknown> = {
    ...(c.get<Record<string, unknown>>("advanced") ?? {}),
    apiUrl: c.get<string>("apiUrl"),
    enabled: c.get<boolean>("enabled"),
    enabledLanguages: c.get<string[]>("enabledLanguages"),
    debounceMs: c.get<number>("debounceMs"),
    maxTokens: c.get<number>("maxTokens"),
    temperature: c.get<number>("temperature"),
  };
  const apiKey = await secrets.get(SECRET_API_KEY);
  if (apiKey) {
    settings.apiKey = apiKey;
  }
  return settings;
}

function renderStatus(): void {
  const label = STATE_LABEL[lastState.state] ?? { icon: "$(question)", text: String(lastState.state) };
  if (!enabled()) {
    statusItem.text = "$(circle-slash) DeepShiva: off";
    statusItem.tooltip = "DeepShiva suggestions are off. Click to turn them on.";
  } else {
    statusItem.text = `${label.icon} DeepShiva: ${label.text}`;
    const restricted = vscode.workspace.isTrusted
      ? ""
      : "\nRestricted Mode: only your user settings apply (the workspace's serverPath, apiUrl and advanced are ignored).";
    statusItem.tooltip = `${lastState.message ?? label.text}${restricted}\nClick to turn suggestions off.`;
  }
  const bad = ["unreachable", "unauthorized", "no_model", "stopped"].includes(String(lastState.state));
  statusItem.backgroundColor =
    bad && enabled() ? new vscode.ThemeColor("statusBarItem.warningBackground") : undefined;
  statusItem.show();
}

function setState(params: StatusParams): void {
  lastState = params;
  renderStatus();
}

async function startClient(context: vscode.ExtensionContext): Promise<void> {
  // Restricted Mode: VS Code already hides the workspace's value of the settings named in
  // package.json's restrictedConfigurations; the workspace's .venv is skipped here.
  const trusted = vscode.workspace.isTrusted;
  const folders = trusted ? (vscode.workspace.workspaceFolders ?? []).map((f) => f.uri.fsPath) : [];
  const command = findServer(config().get<string>("serverPath", ""), folders);
  output.appendLine(`starting ${command}${trusted ? "" : " (Restricted Mode: the workspace's serverPath, apiUrl, advanced and .venv are ignored)"}`);
  const serverOptions: ServerOptions = {
    run: { command, args: [], transport: TransportKind.stdio },
    debug: { command, args: [], transport: TransportKind.stdio },
  };
  const secrets = context.secrets;
  const clientOptions: LanguageClientOptions = {
    documentSelector: [{ scheme: "file" }, { scheme: "untitled" }],
    outputChannel: output,
    initializationOptions: await serverSettings(secrets),
    synchronize: { configurationSection: SECTION },
    middleware: {
      // Turning suggestions off takes effect at once, without a round trip to the server.
      provideInlineCompletionItems: (document, position, ctx, token, next) =>
        enabled() ? next(document, position, ctx, token) : null,
      workspace: {
        // The server asks for section "deepshiva": answer with the settings plus the secret key.
        configuration: async (params, token, next) => {
          const result = await next(params, token);
          if (!Array.isArray(result)) {
            return result;
          }
          const settings = await serverSettings(secrets);
          return Promise.all(
            params.items.map(async (item, i) =>
              item.section === SECTION ? { ...(result[i] ?? {}), ...settings } : result[i],
            ),
          );
        },
      },
    },
  };
  client = new LanguageClient(SECTION, "DeepShiva", serverOptions, clientOptions);
  client.onDidChangeState((e) => {
    if (e.newState === State.Stopped) {
      setState({ state: "stopped", message: "The DeepShiva language server stopped: see DeepShiva: Show log." });
    }
  });
  setState({ state: "starting", message: "Starting the DeepShiva language server" });
  let reported = false;
  client.onNotification("deepshiva/status", (params: StatusParams) => {
    reported = true;
    setState(params);
  });
  try {
    await client.start();
  } catch (err) {
    output.appendLine(`could not start ${command}: ${err}`);
    setState({ state: "stopped", message: `Could not start ${command}: ${err}` });
    return;
  }
  if (!reported) {
    // The server announces changes only: ask for the state it is in now.
    try {
      const now = (await client.sendRequest("workspace/executeCommand", {
        command: "deepshiva.status",
        arguments: [],
      })) as StatusParams | null;
      if (now && now.state && !reported) {
        setState(now);
      }
    } catch (err) {
      output.appendLine(`deepshiva.status: ${err}`);
    }
  }
}

async function restartClient(context: vscode.ExtensionContext): Promise<void> {
  const old = client;
  client = undefined;
  if (old) {
    await old.stop().catch(() => undefined);
  }
  await startClient(context);
}

/** Sends the settings (with the secret key) to the server after a change. */
async function pushSettings(context: vscode.ExtensionContext): Promise<void> {
  if (client && client.isRunning()) {
    await client.sendNotification("workspace/didChangeConfiguration", {
      settings: { [SECTION]: await serverSettings(context.secrets) },
    });
  }
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  output = vscode.window.createOutputChannel("DeepShiva", { log: true });
  statusItem = vscode.window.createStatusBarItem("deepshiva.status", vscode.StatusBarAlignment.Right, 100);
  statusItem.name = "DeepShiva";
  statusItem.command = "deepshiva.toggle";
  context.subscriptions.push(output, statusItem);
  renderStatus();

  context.subscriptions.push(
    vscode.commands.registerCommand("deepshiva.toggle", async () => {
      await config().update("enabled", !enabled(), vscode.ConfigurationTarget.Global);
    }),
    vscode.commands.registerCommand("deepshiva.showLog", () => output.show(true)),
    vscode.commands.registerCommand("deepshiva.restart", () => restartClient(context)),
    vscode.commands.registerCommand("deepshiva.setApiKey", async () => {
      const key = await vscode.window.showInputBox({
        prompt: "DeepShiva API key (empty to remove). Kept in VS Code's secret storage.",
        password: true,
        ignoreFocusOut: true,
      });
      if (key === undefined) {
        return;
      }
      if (key) {
        await context.secrets.store(SECRET_API_KEY, key);
      } else {
        await context.secrets.delete(SECRET_API_KEY);
      }
      await pushSettings(context);
    }),
    vscode.commands.registerCommand("deepshiva.pickModel", async (name?: string) => {
      if (!client || !client.isRunning()) {
        vscode.window.showErrorMessage("DeepShiva: the language server is not running.");
        return;
      }
      const model =
        typeof name === "string"
          ? name
          : await vscode.window.showInputBox({
              prompt: "Model to load (a name the server knows, or a directory on the server)",
              placeHolder: "deepshiva/tiny-python",
              ignoreFocusOut: true,
            });
      if (!model) {
        return;
      }
      setState({ state: "loading", message: `Loading ${model}` });
      try {
        const result = await client.sendRequest("workspace/executeCommand", {
          command: "deepshiva.loadModel",
          arguments: [model],
        });
        output.appendLine(`loadModel ${model}: ${JSON.stringify(result)}`);
      } catch (err) {
        vscode.window.showErrorMessage(`DeepShiva: could not load ${model}: ${err}`);
      }
    }),
    vscode.workspace.onDidChangeConfiguration(async (e) => {
      if (e.affectsConfiguration(`${SECTION}.serverPath`)) {
        await restartClient(context);
      } else if (e.affectsConfiguration(SECTION)) {
        renderStatus();
      }
    }),
    // Trust granted: the workspace's own settings and .venv may now apply.
    vscode.workspace.onDidGrantWorkspaceTrust(() => restartClient(context)),
    context.secrets.onDidChange((e) => {
      if (e.key === SECRET_API_KEY) {
        void pushSettings(context);
      }
    }),
  );
  await startClient(context);
}

export async function deactivate(): Promise<void> {
  if (client) {
    await client.stop().catch(() => undefined);
  }
}
