/**
 * KubeStudio in JupyterLab: the hub's verbs on the file browser's items (build an image, run a
 * script or a notebook as a job, serve a model, open TensorBoard), the KubeStudio sidebar that
 * follows them, a status bar count, and a notification when one ends.
 *
 * Every call goes to the server's own handlers (kubestudio/extensions/bridge.py), which call the
 * hub services with the server's token, as the `kubestudio` CLI does.
 */
import { ILabShell, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Dialog, ICommandPalette, MainAreaWidget, Notification, showDialog } from '@jupyterlab/apputils';
import { IFileBrowserFactory } from '@jupyterlab/filebrowser';
import { ILauncher } from '@jupyterlab/launcher';
import { Contents } from '@jupyterlab/services';
import { IStatusBar } from '@jupyterlab/statusbar';
import { LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { ApiError, apiUrl, post, requestAPI } from './api';
import {
  checkJob,
  checkTune,
  gpuLimit,
  ILimits,
  JobDialogBody,
  rememberedJob,
  rememberedTune,
  rememberJob,
  rememberTune,
  TuneDialogBody
} from './dialogs';
import { IItem, kindOf } from './kinds';
import { LogViewer } from './logs';
import { KubeStudioSidebar } from './sidebar';
import { browserTabs, ISnapshot, ItemsStore } from './store';

const PLUGIN_ID = '@kubestudio/jupyterlab:plugin';

const kubestudioIcon = new LabIcon({
  name: 'kubestudio:icon',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">' +
    '<path d="M12 2 3 7v10l9 5 9-5V7l-9-5zm0 2.3 6.8 3.8L12 11.9 5.2 8.1 12 4.3zM5 9.8l6 3.4v6.6l-6-3.4V9.8zm8 10v-6.6l6-3.4v6.6l-6 3.4z"/>' +
    '</g></svg>'
});

const MODEL_FILE = /\.(joblib|pkl|pickle|pt|pth|onnx|bst|json|ubj)$/i;

export namespace CommandIDs {
  export const buildImage = 'kubestudio:build-image';
  export const openBoard = 'kubestudio:open-tensorboard';
  export const runJob = 'kubestudio:run-job';
  export const runNotebook = 'kubestudio:run-notebook';
  export const tune = 'kubestudio:tune';
  export const serveModel = 'kubestudio:serve-model';
  export const saveEnvironment = 'kubestudio:save-environment';
  export const openSidebar = 'kubestudio:open-sidebar';
}

interface IServices {
  user: string;
  services: { [name: string]: boolean };
  kinds: { [kind: string]: string };
}

interface IActionAnswer {
  item: IItem;
  record: { [key: string]: unknown };
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Build images, run jobs, serve models and open TensorBoard from the file browser',
  autoStart: true,
  requires: [IFileBrowserFactory],
  optional: [ICommandPalette, ILauncher, IStatusBar, ILabShell],
  activate: async (
    app: JupyterFrontEnd,
    browsers: IFileBrowserFactory,
    palette: ICommandPalette | null,
    launcher: ILauncher | null,
    statusBar: IStatusBar | null
  ) => {
    let services: IServices;
    try {
      services = await requestAPI<IServices>('services');
    } catch (error) {
      console.warn(`KubeStudio: the server has no KubeStudio handlers (${message(error)}); its verbs are hidden`);
      return;
    }
    const has = (service: string) => !!services.services[service];
    // one tab of this server asks, the others hear it (store.ts)
    const tabsName = `kubestudio-items:${apiUrl('items')}`;
    const store = new ItemsStore(
      after => requestAPI<ISnapshot>(`items${after ? `?after=${encodeURIComponent(after)}` : ''}`),
      10,
      browserTabs(tabsName),
      tabsName
    );

    const openLog = (item: IItem) => {
      const id = `kubestudio-log-${item.kind}-${item.id}`;
      const existing = Array.from(app.shell.widgets('main')).find(w => w.id === id);
      if (existing) {
        app.shell.activateById(id);
        return;
      }
      const widget = new MainAreaWidget({ content: new LogViewer(item) });
      widget.id = id;
      widget.title.label = `${item.name} log`;
      widget.title.icon = kubestudioIcon;
      app.shell.add(widget, 'main');
      app.shell.activateById(id);
    };

    const sidebar = new KubeStudioSidebar(store, {
      verb: async (item, verb) => {
        if (verb === 'logs') {
          openLog(item);
          return;
        }
        try {
          const answer = await post<{ record: any }>(`items/${item.kind}/${encodeURIComponent(item.id)}/${verb}`);
          if (verb === 'rerun' && answer.record?.id) {
            Notification.info(`${kindOf(item.kind)?.noun ?? item.kind} ${answer.record.name}: submitted again`, {
              autoClose: 4000
            });
          }
        } catch (error) {
          Notification.error(`${item.name}: ${verb} failed: ${message(error)}`, { autoClose: false });
        }
      },
      predict: async (item, body) => {
        let request: unknown;
        try {
          request = JSON.parse(body);
        } catch (error) {
          return `the request is not JSON: ${message(error)}`;
        }
        try {
          return JSON.stringify(await post(`items/serving/${encodeURIComponent(item.id)}/predict`, request));
        } catch (error) {
          return `error: ${message(error)}`;
        }
      }
    });
    sidebar.title.icon = kubestudioIcon;
    sidebar.setAvailable(Object.keys(services.kinds).filter(kind => has(services.kinds[kind])));
    app.shell.add(sidebar, 'left', { rank: 750 });

    store.ended.connect((_, item) => {
      const kind = kindOf(item.kind);
      if (!kind || item.kind === 'board') {
        return;
      }
      const good = kind.endings[item.status];
      const text = `${kind.noun} ${item.name}: ${item.status}${item.message && !good ? ` (${item.message})` : ''}`;
      const actions = item.verbs.includes('logs')
        ? [{ label: 'Show log', callback: () => openLog(item) }]
        : item.url
          ? [{ label: 'Open', callback: () => window.open(item.url as string, '_blank') }]
          : [];
      if (good) {
        Notification.success(text, { autoClose: 8000, actions });
      } else {
        Notification.error(text, { autoClose: false, actions });
      }
    });

    if (statusBar) {
      const status = new Widget();
      status.addClass('ks-StatusItem');
      const draw = () => {
        const jobs = store.items.filter(i => i.kind === 'job' && i.changing).length;
        const builds = store.items.filter(i => i.kind === 'build' && i.changing).length;
        status.node.textContent = `KubeStudio: ${jobs} job${jobs === 1 ? '' : 's'}, ${builds} build${builds === 1 ? '' : 's'}`;
        status.node.title = 'Your running jobs and image builds (click: the KubeStudio panel)';
      };
      status.node.onclick = () => app.shell.activateById(sidebar.id);
      store.changed.connect(draw);
      draw();
      statusBar.registerStatusItem('kubestudio:status', { item: status, align: 'left', rank: 5 });
    }
    void store.start();

    const selected = (): Contents.IModel | undefined => {
      const browser = browsers.tracker.currentWidget;
      if (!browser) {
        return undefined;
      }
      const first = browser.selectedItems().next();
      return first && !first.done ? first.value : undefined;
    };
    const isFolder = () => selected()?.type === 'directory';
    const endsWith = (suffix: RegExp) => {
      const model = selected();
      return !!model && model.type !== 'directory' && suffix.test(model.name);
    };

    /** Send an action; its item joins the sidebar at once. */
    const act = async (verb: string, body: object, show = true): Promise<IItem | undefined> => {
      try {
        const answer = await post<IActionAnswer>(`actions/${verb}`, body);
        store.upsert(answer.item);
        if (show) {
          app.shell.activateById(sidebar.id);
        }
        return answer.item;
      } catch (error) {
        if (error instanceof ApiError && error.body.offer) {
          throw error;
        }
        Notification.error(message(error), { autoClose: false });
        return undefined;
      }
    };

    const { commands } = app;
    commands.addCommand(CommandIDs.buildImage, {
      label: 'Build image from this folder',
      caption: "Build an image from the folder's Dockerfile (or its requirements.txt / environment.yml)",
      icon: kubestudioIcon,
      isVisible: () => has('images') && isFolder(),
      execute: async () => {
        const folder = selected();
        if (!folder) {
          return;
        }
        try {
          return await act('build', { path: folder.path });
        } catch (error) {
          const offer = (error as ApiError).body.offer as string;
          const answer = await showDialog({
            title: 'Build image',
            body: `${folder.path || 'This folder'} has no Dockerfile. Build an image with the packages of its ${offer}?`,
            buttons: [Dialog.cancelButton(), Dialog.okButton({ label: `Build from ${offer}` })]
          });
          if (answer.button.accept) {
            return act('build', { path: folder.path, from_packages: true });
          }
        }
      }
    });
    commands.addCommand(CommandIDs.openBoard, {
      label: 'Open TensorBoard here',
      caption: 'A TensorBoard on this log folder, in a new browser tab',
      icon: kubestudioIcon,
      isVisible: () => has('tensorboards') && isFolder(),
      execute: async () => {
        const folder = selected();
        if (!folder) {
          return;
        }
        const tab = window.open('', '_blank'); // opened on the click itself: no popup blocker
        const item = await act('board', { path: folder.path }, false);
        if (item?.url && tab) {
          tab.location.href = item.url;
        } else {
          tab?.close();
        }
        return item;
      }
    });
    commands.addCommand(CommandIDs.runJob, {
      label: 'Run as training job...',
      caption: 'Run this script as a job (nodes, processes, GPUs, arguments, packages)',
      icon: kubestudioIcon,
      isVisible: () => has('jobs') && endsWith(/\.py$/),
      execute: async () => {
        const file = selected();
        if (!file) {
          return;
        }
        let settings = rememberedJob(file.path);
        // the dialog says the GPU limit up front; without an answer it still opens (the service checks)
        const limit = gpuLimit(await requestAPI<ILimits>('limits').catch(() => null));
        for (;;) {
          const answer = await showDialog({
            title: `Run ${file.name} as a job`,
            body: new JobDialogBody(file.path, settings, limit),
            buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Run' })]
          });
          if (!answer.button.accept || !answer.value) {
            return;
          }
          settings = answer.value;
          const problems = Object.values(checkJob(settings, limit));
          if (!problems.length) {
            break;
          }
          await showDialog({ title: 'Run as job', body: problems.join('\n'), buttons: [Dialog.okButton()] });
        }
        rememberJob(file.path, settings);
        const item = await act('job', { path: file.path, ...settings });
        if (item) {
          openLog(item);
        }
        return item;
      }
    });
    commands.addCommand(CommandIDs.runNotebook, {
      label: 'Run as job',
      caption: 'Run this notebook headless as a job; its outputs are saved beside it (NAME.output.ipynb)',
      icon: kubestudioIcon,
      isVisible: () => has('jobs') && endsWith(/\.ipynb$/),
      execute: async () => {
        const file = selected();
        return file ? act('notebook', { path: file.path }) : undefined;
      }
    });
    commands.addCommand(CommandIDs.tune, {
      label: 'Tune...',
      caption: 'Search for the best parameters of this script: every trial a job (Optuna)',
      icon: kubestudioIcon,
      isVisible: () => has('jobs') && endsWith(/\.py$/),
      execute: async () => {
        const file = selected();
        if (!file) {
          return;
        }
        let settings = rememberedTune(file.path);
        for (;;) {
          const answer = await showDialog({
            title: `Tune ${file.name}`,
            body: new TuneDialogBody(file.path, settings),
            buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Start' })]
          });
          if (!answer.button.accept || !answer.value) {
            return;
          }
          settings = answer.value;
          const problems = Object.values(checkTune(settings));
          if (!problems.length) {
            break;
          }
          await showDialog({ title: 'Tune', body: problems.join('\n'), buttons: [Dialog.okButton()] });
        }
        rememberTune(file.path, settings);
        const item = await act('experiment', { path: file.path, ...settings });
        if (item) {
          app.shell.activateById(sidebar.id);
        }
        return item;
      }
    });
    commands.addCommand(CommandIDs.serveModel, {
      label: 'Serve this model...',
      caption: 'Serve this model file or folder behind the hub (V1 and V2 protocols)',
      icon: kubestudioIcon,
      isVisible: () => has('jobs') && (isFolder() || endsWith(MODEL_FILE)),
      execute: async () => {
        const model = selected();
        if (!model) {
          return;
        }
        const stem = model.name.replace(/\.[^.]*$/, '').toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '');
        const input = document.createElement('input');
        input.value = stem || 'model';
        input.name = 'name';
        const body = new Widget({ node: document.createElement('div') });
        body.node.append(`Serve ${model.path} as `, input);
        const answer = await showDialog({
          title: 'Serve this model',
          body,
          buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Serve' })]
        });
        if (answer.button.accept) {
          return act('serve', { path: model.path, name: input.value.trim() });
        }
      }
    });
    commands.addCommand(CommandIDs.saveEnvironment, {
      label: 'Save this environment as an image',
      caption: "An image of this server's image plus the packages you installed in it",
      icon: kubestudioIcon,
      isVisible: () => has('images'),
      execute: () => act('environment', {})
    });
    commands.addCommand(CommandIDs.openSidebar, {
      label: 'Show the KubeStudio panel',
      execute: () => app.shell.activateById(sidebar.id)
    });

    if (palette) {
      for (const command of [CommandIDs.saveEnvironment, CommandIDs.openSidebar]) {
        palette.addItem({ command, category: 'KubeStudio' });
      }
    }
    if (launcher && has('images')) {
      launcher.add({ command: CommandIDs.saveEnvironment, category: 'KubeStudio', rank: 1 });
    }
  }
};

export default plugin;
